"""The retraining pipeline: validate → training set → train → gate → register, in a row.

Each stage reads the lake and the registry and hands the next one a lake location or MLflow run
ids, never data, so each is safe to retry and runs as its own Airflow task (`dags/retrain.py`,
through `pipelines.tasks`); `retrain` runs them in a row for `warden train` and the demo.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from infra import locks
from infra.context import Context
from infra.memory import MeasuredStep, StepUsage
from infra.progress import ProgressLine
from infra.settings import Settings
from models import registry
from models.estimators import MODEL_KINDS
from pipelines import gate
from pipelines.registration import register_candidate
from pipelines.training import Candidate, train_candidates
from pipelines.training_set import Window, prepare_training_set
from pipelines.validation import ValidationReport, validate_window

STEPS = ("validate", "training set", "train", "gate", "register")


def window_ending(settings: Settings, end: datetime) -> Window:
    """The training window: the configured number of days up to `end`, on whole hours (UTC)."""
    end = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return Window(end - timedelta(days=settings.training_window_days), end)


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
    ctx: Context,
    window: Window,
    kinds: tuple[str, ...] = MODEL_KINDS,
    seed: int = 0,
    progress: ProgressLine | None = None,
) -> RetrainReport:
    """All steps in a row, as the `retrain` DAG runs them, holding the training lock; stops at
    the first failure."""
    progress = progress or ProgressLine("train")
    ctx.start_spark()
    with locks.holding(ctx.settings, "a training run", progress):
        return _retrain(ctx, window, kinds, seed, progress)


def _retrain(ctx: Context, window: Window, kinds: tuple[str, ...], seed: int, progress: ProgressLine) -> RetrainReport:
    report = RetrainReport(window)

    @contextmanager
    def step(number: int, text: str) -> Iterator[None]:
        name = STEPS[number - 1]
        progress.update(f"[{number}/{len(STEPS)}] {name}: {text}", force=True)
        with MeasuredStep() as measured:
            yield
        report.usage[name] = measured.usage

    with step(1, f"checking {window} against the expectation suite"):
        report.validation = validate_window(ctx, window)
    progress.update(f"[1/{len(STEPS)}] validate: {report.validation.summary()}", force=True)
    with step(2, "refreshing features and building the point-in-time training set"):
        report.training_set = prepare_training_set(ctx, window)
    with step(3, f"fitting {', '.join(kinds)}"):
        report.candidates = train_candidates(ctx, report.training_set, window, kinds, seed, progress)
    with step(4, "judging the best candidate against the floors and the champion"):
        report.verdict = gate.judge(ctx.settings, ctx.spark, ctx.registry, report.training_set, report.candidates)
    with step(5, "registering"):
        report.version, _ = register_candidate(ctx.settings, ctx.registry, report.verdict.candidate)
    progress.done(
        f"version {report.version.version} ({report.verdict.candidate.kind}) registered, "
        + ("challenger, waiting for approval" if report.verdict.promotable else "not promotable")
    )
    return report
