"""Register the gate's candidate as a new version of the model, with everything a reviewer needs.

A promotable candidate takes the `challenger` alias and waits for a person's decision
(`pipelines.promotion`). One that failed the gate is still registered, tagged
`gate_promotable=false` with the reasons, so the MLflow UI shows what was tried and why it
stopped; it never takes an alias. Idempotent: a run already registered is not registered again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.logs import library_output
from infra.settings import Settings
from models import registry
from pipelines import gate
from pipelines.training import Candidate, feature_list, git_commit

if TYPE_CHECKING:
    from mlflow.entities import Run


def version_tags(candidate: Candidate, run: Run) -> dict[str, str]:
    """What a version says about its model: kind, threshold, features, window, commit, test metrics."""
    return {
        registry.TAG_KIND: candidate.kind,
        registry.TAG_THRESHOLD: f"{candidate.threshold:.6f}",
        registry.TAG_FEATURES: feature_list(),
        registry.TAG_WINDOW: run.data.tags.get(registry.TAG_WINDOW, ""),
        registry.TAG_COMMIT: run.data.tags.get(registry.TAG_COMMIT, git_commit()),
        **{k: f"{v:.4f}" for k, v in candidate.quality.as_metrics().items()},
    }


def register_candidate(settings: Settings, candidate: Candidate) -> tuple[registry.VersionInfo, gate.Verdict]:
    client = registry.configure_mlflow(settings)
    verdict = gate.recorded(client, candidate)
    existing = client.search_model_versions(f"name = '{settings.model_name}' and run_id = '{candidate.run_id}'")
    if existing:
        version = registry.get_version(client, settings.model_name, str(existing[0].version))
    else:
        tags = {
            **version_tags(candidate, client.get_run(candidate.run_id)),
            registry.TAG_PROMOTABLE: str(verdict.promotable).lower(),
            registry.TAG_GATE_REASONS: "; ".join(verdict.reasons),
        }
        with library_output(settings):  # MLflow prints "Successfully registered model …" itself
            version = registry.register(client, settings.model_name, candidate.model_uri, tags=tags)
    if verdict.promotable:
        registry.set_challenger(client, version)
    return version, verdict
