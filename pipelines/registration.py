"""Register the gate's candidate as a new version of the model, with everything a reviewer needs.

A promotable candidate takes the `challenger` alias and waits for a person's decision
(`pipelines.promotion`). One that failed the gate is still registered, tagged
`gate_promotable=false` with the reasons, so the MLflow UI shows what was tried and why it
stopped; it never takes an alias. Idempotent: a run already registered is not registered again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.context import Context
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


def register_run(ctx: Context, run_id: str) -> tuple[registry.VersionInfo, gate.Verdict]:
    """Register the candidate the MLflow run `run_id` trained, as the gate judged it."""
    return register_candidate(ctx.settings, ctx.registry, Candidate.of(ctx.registry.client.get_run(run_id)))


def register_candidate(
    settings: Settings, models: registry.ModelRegistry, candidate: Candidate
) -> tuple[registry.VersionInfo, gate.Verdict]:
    verdict = gate.recorded(models.client, candidate)
    version = models.version_of_run(candidate.run_id)
    if version is None:
        tags = {
            **version_tags(candidate, models.client.get_run(candidate.run_id)),
            registry.TAG_PROMOTABLE: str(verdict.promotable).lower(),
            registry.TAG_GATE_REASONS: "; ".join(verdict.reasons),
        }
        with library_output(settings):  # MLflow prints "Successfully registered model …" itself
            version = models.register(candidate.model_uri, tags=tags)
    if verdict.promotable:
        models.set_challenger(version)
    return version, verdict
