"""Every MLflow registry call of streamwarden: one registered model, three aliases, version tags.

- `champion`: what the stream scores with;
- `challenger`: the newest candidate waiting for a person's approval;
- `previous`: the champion before the last promotion.

No stages. Everything else about a version is a tag: its model kind, decision threshold,
feature list, training window, Git commit, and who decided its promotion and when.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from infra.endpoints import mlflow_client_env, require_mlflow
from infra.settings import Settings
from models.exceptions import PromotionRefused, VersionNotFound, VersionNotReady

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"

TAG_KIND = "model_kind"
TAG_THRESHOLD = "threshold"
TAG_FEATURES = "feature_list"
TAG_WINDOW = "training_window"
TAG_COMMIT = "git_commit"
TAG_DECIDED_BY = "decided_by"
TAG_DECIDED_AT = "decided_at"
TAG_DECISION = "decision"
TAG_REASON = "decision_reason"
TAG_PROMOTABLE = "gate_promotable"
TAG_GATE_REASONS = "gate_reasons"
TAG_GATE_OVERRIDDEN = "gate_overridden"

# What the server answers for a model, version or alias that does not exist.
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point this process's MLflow client at the tracking server, with its login; a ServiceError
    when the server does not answer."""
    require_mlflow(settings)
    import mlflow
    from mlflow import MlflowClient

    # The MLflow client reads its login and its retry policy from the environment only.
    os.environ.update(mlflow_client_env(settings))
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri)


@dataclass(frozen=True)
class VersionInfo:
    """What the stream and the promotion need to know about one registered version."""

    name: str
    version: str
    status: str
    kind: str
    threshold: float
    features: tuple[str, ...]
    run_id: str
    # The gate's reasons when it refused this version; None when it passed, or never judged it
    # (a version registered by hand).
    gate_refusal: str | None = None

    @classmethod
    def of(cls, version: ModelVersion) -> VersionInfo:
        tags = version.tags or {}
        return cls(
            name=version.name,
            version=str(version.version),
            status=version.status,
            kind=tags.get(TAG_KIND, ""),
            threshold=float(tags.get(TAG_THRESHOLD, "nan")),
            features=tuple(json.loads(tags.get(TAG_FEATURES, "[]"))),
            run_id=version.run_id or "",
            gate_refusal=(tags.get(TAG_GATE_REASONS) or "refused") if tags.get(TAG_PROMOTABLE) == "false" else None,
        )

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def version_by_alias(client: MlflowClient, name: str, alias: str) -> VersionInfo | None:
    """The version under `alias`, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return VersionInfo.of(client.get_model_version_by_alias(name, alias))
    except MlflowException as exc:
        if exc.error_code in _MISSING:
            return None
        raise


def get_version(client: MlflowClient, name: str, version: str) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    try:
        return VersionInfo.of(client.get_model_version(name, version))
    except MlflowException as exc:
        if exc.error_code in _MISSING:
            raise VersionNotFound(f"model {name} has no version {version}; the MLflow UI lists its versions") from None
        raise


def register(client: MlflowClient, name: str, model_uri: str, tags: dict[str, str], timeout: int = 300) -> VersionInfo:
    """Register a logged model as a new version of `name`; MLflow waits up to `timeout` s for it to be READY."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        created = mlflow.register_model(model_uri, name, await_registration_for=timeout, tags=tags)
    except MlflowException as exc:  # what MLflow's wait raises for a failed or late registration
        raise VersionNotReady(f"model {name}: the new version did not become READY: {exc.message}") from None
    version = client.get_model_version(name, created.version)
    if version.status != "READY":
        raise VersionNotReady(f"model {name} version {created.version} did not become READY ({version.status})")
    return VersionInfo.of(version)


def set_challenger(client: MlflowClient, version: VersionInfo) -> None:
    client.set_registered_model_alias(version.name, CHALLENGER, version.version)


def promote(
    client: MlflowClient, name: str, version: str, decided_by: str, reason: str, override_gate: bool = False
) -> VersionInfo:
    """Move `champion` to `version` (the old champion becomes `previous`) and record who decided.

    A version the gate refused is promoted only with `override_gate`, and the override is
    recorded on it beside who decided and why. Idempotent: promoting the current champion again
    changes nothing.
    """
    target = get_version(client, name, version)
    if target.status != "READY":
        raise VersionNotReady(f"model {name} version {version} is {target.status}, not READY")
    if target.gate_refusal is not None and not override_gate:
        raise PromotionRefused(
            f"model {name} version {version} failed the gate ({target.gate_refusal}); approving it needs "
            "an explicit override: `warden promote --override-gate`, or override_gate in Airflow's approval"
        )
    current = version_by_alias(client, name, CHAMPION)
    if current is not None and current.version == target.version:
        return target
    _record_decision(client, target, "approved", decided_by, reason)
    if target.gate_refusal is not None:
        client.set_model_version_tag(name, target.version, TAG_GATE_OVERRIDDEN, "true")
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current.version)
    client.set_registered_model_alias(name, CHAMPION, target.version)
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is not None and challenger.version == target.version:
        client.delete_registered_model_alias(name, CHALLENGER)
    return target


def reject(client: MlflowClient, name: str, version: str, decided_by: str, reason: str) -> VersionInfo:
    """Tag `version` rejected with the reason; it leaves `challenger` if it held it."""
    target = get_version(client, name, version)
    _record_decision(client, target, "rejected", decided_by, reason)
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is not None and challenger.version == target.version:
        client.delete_registered_model_alias(name, CHALLENGER)
    return target


def _record_decision(client: MlflowClient, version: VersionInfo, decision: str, decided_by: str, reason: str) -> None:
    if not decided_by.strip():
        raise PromotionRefused("a promotion decision needs the name of the person who made it (--by)")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in (
        (TAG_DECISION, decision),
        (TAG_DECIDED_BY, decided_by),
        (TAG_DECIDED_AT, stamp),
        (TAG_REASON, reason),
    ):
        client.set_model_version_tag(version.name, version.version, key, value)
