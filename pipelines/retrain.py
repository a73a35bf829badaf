"""The retraining pipeline: validate → training set → train → gate → register.

Each step reads the lake and the registry and hands the next one a lake location or MLflow run
ids, never data, so each is safe to retry and runs as its own Airflow task (`dags/retrain.py`);
`retrain` runs them in a row for `warden train`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession

from infra import locks
from infra.memory import MeasuredStep, StepUsage
from infra.progress import ProgressLine
from infra.settings import Settings
from infra.spark_progress import spark_progress
from models import registry
from models.estimators import MODEL_KINDS
from pipelines import gate
from pipelines.exceptions import DataValidationError
from pipelines.feature_refresh import refresh_features
from pipelines.registration import register_candidate
from pipelines.training import Candidate, train_candidates
from pipelines.training_set import Window, write_training_set
from pipelines.validation import ValidationReport, validate_history

STEPS = ("validate", "training set", "train", "gate", "register")


def window_ending(settings: Settings, end: datetime) -> Window:
    """The training window: the configured number of days up to `end`, on whole hours (UTC)."""
    end = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return Window(end - timedelta(days=settings.training_window_days), end)


def validate_step(settings: Settings, spark: SparkSession, window: Window) -> ValidationReport:
    """Run the expectation suite on the window; the report is kept as an MLflow artifact either
    way, and a failure raises DataValidationError before anything is trained."""
    with MeasuredStep() as validating:
        report = validate_history(settings, spark, window)
    client = registry.configure_mlflow(settings)
    import mlflow

    mlflow.set_experiment(settings.model_name)
    with mlflow.start_run(run_name=f"validate-{window.id}") as run:
        mlflow.set_tags({"stage": "validation", registry.TAG_WINDOW: str(window)})
        mlflow.log_metrics(
            {
                "validation_rows": report.rows,
                "validation_failures": len(report.failures),
                **validating.usage.as_metrics(),
            }
        )
        mlflow.log_dict(report.as_dict(), "validation_report.json")
    if not report.success:
        client.set_terminated(run.info.run_id, "FAILED")
        raise DataValidationError(report)
    return report


def training_set_step(settings: Settings, spark: SparkSession, window: Window) -> str:
    """Refresh the window's statistics in Feast's offline source, then build and write the set;
    its size, time and peak memory go to a `training-set-<window>` run in MLflow."""
    history_start = window.start - timedelta(minutes=settings.feature_window_minutes)
    with MeasuredStep() as refreshing:
        refresh_features(settings, spark, window.end, history_start, ProgressLine("features"))
    progress = ProgressLine("training set")
    with MeasuredStep() as building:
        with spark_progress(spark, progress, "joining statistics point-in-time, writing the set"):
            written = write_training_set(settings, spark, window)
    progress.done(f"{written.rows:,} rows in {written.files} files at {written.location}, in {building.usage}")
    registry.configure_mlflow(settings)
    import mlflow

    mlflow.set_experiment(settings.model_name)
    with mlflow.start_run(run_name=f"training-set-{window.id}"):
        mlflow.set_tags({"stage": "training_set", registry.TAG_WINDOW: str(window), "location": written.location})
        mlflow.log_metrics(
            {
                "training_set_rows": written.rows,
                "training_set_files": written.files,
                **refreshing.usage.as_metrics("refresh_"),
                **building.usage.as_metrics("build_"),
            }
        )
    return written.location


def gate_step(settings: Settings, spark: SparkSession, location: str, run_ids: list[str]) -> gate.Verdict:
    client = registry.configure_mlflow(settings)
    candidates = [Candidate.of(client.get_run(run_id)) for run_id in run_ids]
    return gate.judge(settings, spark, location, candidates)


def register_step(settings: Settings, run_id: str) -> tuple[registry.VersionInfo, gate.Verdict]:
    client = registry.configure_mlflow(settings)
    return register_candidate(settings, Candidate.of(client.get_run(run_id)))


@dataclass
class RetrainReport:
    window: Window
    validation: ValidationReport | None = None
    training_set: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    verdict: gate.Verdict | None = None
    version: registry.VersionInfo | None = None
    # Each step's time and peak memory, by name (STEPS), in the order they ran.
    usage: dict[str, StepUsage] = field(default_factory=dict)


def retrain(
    settings: Settings,
    spark: SparkSession,
    window: Window,
    kinds: tuple[str, ...] = MODEL_KINDS,
    seed: int = 0,
    progress: ProgressLine | None = None,
) -> RetrainReport:
    """All steps in a row, as the `retrain` DAG runs them, holding the training lock; stops at
    the first failure."""
    progress = progress or ProgressLine("train")
    with locks.holding(settings, "a training run", progress):
        return _retrain(settings, spark, window, kinds, seed, progress)


def _retrain(
    settings: Settings, spark: SparkSession, window: Window, kinds: tuple[str, ...], seed: int, progress: ProgressLine
) -> RetrainReport:
    report = RetrainReport(window)

    @contextmanager
    def step(number: int, text: str) -> Iterator[None]:
        name = STEPS[number - 1]
        progress.update(f"[{number}/{len(STEPS)}] {name}: {text}", force=True)
        with MeasuredStep() as measured:
            yield
        report.usage[name] = measured.usage

    with step(1, f"checking {window} against the expectation suite"):
        report.validation = validate_step(settings, spark, window)
    progress.update(f"[1/{len(STEPS)}] validate: {report.validation.summary()}", force=True)
    with step(2, "refreshing features and building the point-in-time training set"):
        report.training_set = training_set_step(settings, spark, window)
    with step(3, f"fitting {', '.join(kinds)}"):
        report.candidates = train_candidates(settings, spark, report.training_set, window, kinds, seed, progress)
    with step(4, "judging the best candidate against the floors and the champion"):
        report.verdict = gate_step(settings, spark, report.training_set, [c.run_id for c in report.candidates])
    with step(5, "registering"):
        report.version, _ = register_step(settings, report.verdict.candidate.run_id)
    progress.done(
        f"version {report.version.version} ({report.verdict.candidate.kind}) registered, "
        + ("challenger, waiting for approval" if report.verdict.promotable else "not promotable")
    )
    return report
