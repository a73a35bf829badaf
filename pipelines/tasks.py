"""The one adapter between Airflow and the stages: what each Airflow task runs.

Each function takes small, JSON-able arguments (an ISO time, a window, a lake location, MLflow
run ids, the model's name as a DAG parameter), builds the task's context once and hands the
stage what it uses. A task is its own process, so each builds its own; data moves between tasks
as lake locations and MLflow run ids, never as XCom payloads. Nothing here imports Airflow:
tests and `warden` call the same functions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from infra import locks
from infra.context import Context
from infra.settings import load_settings


def _context(app: str, model_name: str | None = None) -> Context:
    """The task's context: the settings from the environment Airflow's worker passes on, and the
    model a run names (None: WARDEN_MODEL_NAME)."""
    return Context.build(app).for_model(model_name)


def training_window(end: str) -> str:
    """The training window ending at the run's time (ISO-8601), as `start/end`."""
    from pipelines.retrain import window_ending

    return str(window_ending(load_settings(), datetime.fromisoformat(end)))


def validate(window: str, model_name: str | None = None) -> str:
    from pipelines.training_set import Window
    from pipelines.validation import validate_window

    return validate_window(_context("warden-validate", model_name), Window.parse(window)).summary()


def build_training_set(window: str, model_name: str | None = None) -> str:
    from pipelines.training_set import Window, prepare_training_set

    ctx = _context("warden-training-set", model_name)
    with locks.holding(ctx.settings, "the retrain DAG's training set"):
        return prepare_training_set(ctx, Window.parse(window))


def train(window: str, location: str, model_name: str | None = None) -> list[str]:
    from models.estimators import MODEL_KINDS
    from pipelines.training import train_candidates
    from pipelines.training_set import Window

    ctx = _context("warden-train", model_name)
    with locks.holding(ctx.settings, "the retrain DAG's training"):
        candidates = train_candidates(ctx, location, Window.parse(window), MODEL_KINDS)
    return [c.run_id for c in candidates]


def evaluate(location: str, run_ids: list[str], model_name: str | None = None) -> str:
    """The gate's verdict on the best candidate; returns its run id (the verdict is on the run)."""
    from pipelines.gate import judge_runs

    verdict = judge_runs(_context("warden-gate", model_name), location, run_ids)
    print(verdict.summary())  # noqa: T201 - the task log is where an operator reads it
    return verdict.candidate.run_id


def register(run_id: str, model_name: str | None = None) -> dict[str, Any]:
    from pipelines.registration import register_run

    version, verdict = register_run(_context("warden-register", model_name), run_id)
    return {
        "model_name": version.name,
        "version": version.version,
        "promotable": verdict.promotable,
        "summary": verdict.summary(),
    }


def refresh_features(end: str) -> str:
    from pipelines.feature_refresh import refresh_features as refresh

    ctx = _context("warden-feature-refresh")
    stop = datetime.fromisoformat(end)
    # Two grid steps back: a late event changes the statistics of the last steps, not older ones.
    start = stop - 2 * timedelta(minutes=ctx.settings.feature.step_minutes)
    with locks.holding(ctx.settings, "the feature_refresh DAG"):
        report = refresh(ctx, stop, start)
    return f"{report.rows:,} statistics rows for {report.devices} devices up to {report.end.isoformat()}"


def compact_lake() -> str:
    from pipelines.compaction import compact_tables

    return "; ".join(c.summary() for c in compact_tables(_context("warden-compaction").lake))


def describe_challenger(model_name: str | None = None) -> dict[str, str] | None:
    """The challenger's model name, version and a Markdown review of it beside the champion, or None."""
    from pipelines.promotion import review

    return review(_context("warden-review", model_name).registry)


def apply_decision(model_name: str, version: str, decision: dict[str, Any]) -> str:
    """Carry out a reviewer's answer (as the approval task recorded it) on the registry."""
    from pipelines.promotion import decide, outcome

    approved = bool(decision["approved"])
    reviewer = decision.get("responded_by_user") or {}
    # A decision recorded before the operator kept its timeout has none: it says so without one.
    hours = decision.get("timeout_hours")
    decided_by = reviewer.get("name") or (f"no answer within {hours:g} h" if hours else "no answer in time")
    answers = decision.get("params_input") or {}
    reason = answers.get("reason") or "(no reason given)"
    override_gate = bool(answers.get("override_gate"))
    info = decide(
        _context("warden-decision", model_name).registry, version, approved, decided_by, reason, override_gate
    )
    return f"{info.name} version {info.version} {outcome(info, approved)}; decided by {decided_by}: {reason}"
