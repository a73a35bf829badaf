"""Every MLflow registry call of streamwarden: one registered model, three aliases, version tags.

- `champion`: what the stream scores with;
- `challenger`: the newest candidate waiting for a person's approval;
- `previous`: the champion before the last promotion.

No stages. Everything else about a version is a tag: its model kind, decision threshold,
feature list, training window, Git commit, and who decided its promotion and when.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from infra.endpoints import require_mlflow
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


class ModelRegistry:
    """One registered model on the tracking server: its versions, its aliases, the decisions on them.

    Built once per entry point by its context (`infra.context`), which has set the client's login
    in the environment.
    """

    def __init__(self, client: MlflowClient, name: str) -> None:
        self.client = client
        self.name = name

    @classmethod
    def connect(cls, settings: Settings) -> ModelRegistry:
        """The registry of WARDEN_MODEL_NAME; a one-line ServiceError when the server does not answer."""
        require_mlflow(settings)
        from mlflow import MlflowClient

        return cls(MlflowClient(settings.mlflow_tracking_uri), settings.model_name)

    def by_alias(self, alias: str) -> VersionInfo | None:
        """The version under `alias`, or None when the alias (or the model) does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return VersionInfo.of(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException as exc:
            if exc.error_code in _MISSING:
                return None
            raise

    def version(self, version: str) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            return VersionInfo.of(self.client.get_model_version(self.name, version))
        except MlflowException as exc:
            if exc.error_code in _MISSING:
                raise VersionNotFound(
                    f"model {self.name} has no version {version}; the MLflow UI lists its versions"
                ) from None
            raise

    def version_of_run(self, run_id: str) -> VersionInfo | None:
        """The version registered from `run_id`, if there is one."""
        existing = self.client.search_model_versions(f"name = '{self.name}' and run_id = '{run_id}'")
        return self.version(str(existing[0].version)) if existing else None

    def register(self, model_uri: str, tags: dict[str, str], timeout: int = 300) -> VersionInfo:
        """Register a logged model as a new version; MLflow waits up to `timeout` s for it to be READY."""
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            created = mlflow.register_model(model_uri, self.name, await_registration_for=timeout, tags=tags)
        except MlflowException as exc:  # what MLflow's wait raises for a failed or late registration
            raise VersionNotReady(f"model {self.name}: the new version did not become READY: {exc.message}") from None
        version = self.client.get_model_version(self.name, created.version)
        if version.status != "READY":
            raise VersionNotReady(
                f"model {self.name} version {created.version} did not become READY ({version.status})"
            )
        return VersionInfo.of(version)

    def set_challenger(self, version: VersionInfo) -> None:
        self.client.set_registered_model_alias(self.name, CHALLENGER, version.version)

    def promote(self, version: str, decided_by: str, reason: str, override_gate: bool = False) -> VersionInfo:
        """Move `champion` to `version` (the old champion becomes `previous`) and record who decided.

        A version the gate refused is promoted only with `override_gate`, and the override is
        recorded on it beside who decided and why. Idempotent: promoting the current champion again
        changes nothing.
        """
        target = self.version(version)
        if target.status != "READY":
            raise VersionNotReady(f"model {self.name} version {version} is {target.status}, not READY")
        if target.gate_refusal is not None and not override_gate:
            raise PromotionRefused(
                f"model {self.name} version {version} failed the gate ({target.gate_refusal}); approving it needs "
                "an explicit override: `warden promote --override-gate`, or override_gate in Airflow's approval"
            )
        current = self.by_alias(CHAMPION)
        if current is not None and current.version == target.version:
            return target
        self._record_decision(target, "approved", decided_by, reason)
        if target.gate_refusal is not None:
            self.client.set_model_version_tag(self.name, target.version, TAG_GATE_OVERRIDDEN, "true")
        if current is not None:
            self.client.set_registered_model_alias(self.name, PREVIOUS, current.version)
        self.client.set_registered_model_alias(self.name, CHAMPION, target.version)
        self._leave_challenger(target)
        return target

    def reject(self, version: str, decided_by: str, reason: str) -> VersionInfo:
        """Tag `version` rejected with the reason; it leaves `challenger` if it held it."""
        target = self.version(version)
        self._record_decision(target, "rejected", decided_by, reason)
        self._leave_challenger(target)
        return target

    def _leave_challenger(self, target: VersionInfo) -> None:
        challenger = self.by_alias(CHALLENGER)
        if challenger is not None and challenger.version == target.version:
            self.client.delete_registered_model_alias(self.name, CHALLENGER)

    def _record_decision(self, version: VersionInfo, decision: str, decided_by: str, reason: str) -> None:
        if not decided_by.strip():
            raise PromotionRefused("a promotion decision needs the name of the person who made it (--by)")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        for key, value in (
            (TAG_DECISION, decision),
            (TAG_DECIDED_BY, decided_by),
            (TAG_DECIDED_AT, stamp),
            (TAG_REASON, reason),
        ):
            self.client.set_model_version_tag(version.name, version.version, key, value)
