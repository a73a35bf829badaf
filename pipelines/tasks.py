"""What each Airflow task runs: plain functions with small, JSON-able arguments and results.

A task is its own process, so each function reads the settings and starts its own Spark session;
data moves between tasks as lake locations and MLflow run ids, never as XCom payloads. Nothing
here imports Airflow: tests and `warden` call the same functions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from infra import locks
from infra.settings import Settings, get_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _spark(app: str) -> SparkSession:
    from infra.spark import spark_session

    return spark_session(get_settings(), app, with_kafka=False)


def training_window(end: str) -> str:
    """The training window ending at the run's time (ISO-8601), as `start/end`."""
    from pipelines.retrain import window_ending

    return str(window_ending(get_settings(), datetime.fromisoformat(end)))


def validate(window: str) -> str:
    from pipelines.retrain import validate_step
    from pipelines.training_set import Window

    return validate_step(get_settings(), _spark("warden-validate"), Window.parse(window)).summary()


def build_training_set(window: str) -> str:
    from pipelines.retrain import training_set_step
    from pipelines.training_set import Window

    settings = get_settings()
    with locks.holding(settings, "the retrain DAG's training set"):
        return training_set_step(settings, _spark("warden-training-set"), Window.parse(window))


def train(window: str, location: str) -> list[str]:
    from models.estimators import MODEL_KINDS
    from pipelines.training import train_candidates
    from pipelines.training_set import Window

    settings = get_settings()
    with locks.holding(settings, "the retrain DAG's training"):
        candidates = train_candidates(settings, _spark("warden-train"), location, Window.parse(window), MODEL_KINDS)
    return [c.run_id for c in candidates]


def evaluate(location: str, run_ids: list[str]) -> str:
    """The gate's verdict on the best candidate; returns its run id (the verdict is on the run)."""
    from pipelines.retrain import gate_step

    verdict = gate_step(get_settings(), _spark("warden-gate"), location, run_ids)
    print(verdict.summary())  # noqa: T201 - the task log is where an operator reads it
    return verdict.candidate.run_id


def register(run_id: str) -> dict[str, Any]:
    from pipelines.retrain import register_step

    version, verdict = register_step(get_settings(), run_id)
    return {"version": version.version, "promotable": verdict.promotable, "summary": verdict.summary()}


def refresh_features(end: str) -> str:
    from pipelines.feature_refresh import refresh_features as refresh

    settings = get_settings()
    stop = datetime.fromisoformat(end)
    # Two grid steps back: a late event changes the statistics of the last steps, not older ones.
    start = stop - 2 * timedelta(minutes=settings.feature_step_minutes)
    with locks.holding(settings, "the feature_refresh DAG"):
        report = refresh(settings, _spark("warden-feature-refresh"), stop, start)
    return f"{report.rows:,} statistics rows for {report.devices} devices up to {report.end.isoformat()}"


def compact_lake() -> str:
    from pipelines.compaction import compact_tables

    return "; ".join(c.summary() for c in compact_tables(get_settings()))


def _for_model(model_name: str | None) -> Settings:
    """The settings, for another registered model than the configured one when a run names it."""
    settings = get_settings()
    return settings.model_copy(update={"model_name": model_name}) if model_name else settings


def describe_challenger(model_name: str | None = None) -> dict[str, str] | None:
    """The challenger's model name, version and a Markdown review of it beside the champion, or None."""
    from pipelines.promotion import review

    return review(_for_model(model_name))


def apply_decision(model_name: str, version: str, decision: dict[str, Any]) -> str:
    """Carry out a reviewer's answer (as the approval task recorded it) on the registry."""
    from pipelines.promotion import decide, outcome

    settings = _for_model(model_name)
    approved = bool(decision["approved"])
    reviewer = decision.get("responded_by_user") or {}
    decided_by = reviewer.get("name") or f"no answer within {settings.approval_timeout_hours:g} h"
    answers = decision.get("params_input") or {}
    reason = answers.get("reason") or "(no reason given)"
    override_gate = bool(answers.get("override_gate"))
    info = decide(settings, version, approved, decided_by, reason, override_gate)
    return f"{info.name} version {info.version} {outcome(info, approved)}; decided by {decided_by}: {reason}"
