"""The evaluation gate: is the best candidate worth a person's approval?

The test split must be fit to judge (anomaly kinds and device types that training saw, enough
anomalies: `pipelines.split_coverage`). The candidate must meet absolute floors (precision,
recall, F1 on the test split), beat the unsupervised per-device z-score on F1 and PR-AUC (what
a model that does not beat it adds, a per-device threshold already does), and beat the current
champion, scored on the same test split with its own threshold, by a margin of the configured
metric. A first model (no champion) is not compared with a champion. The verdict is
recorded on the candidate's MLflow run (tags `gate_*`, metrics `champion_test_*`), where the
registration step and a person in the MLflow UI both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from infra.context import Context
from infra.settings import Settings
from models.evaluation import Quality
from models.exceptions import ModelRejected
from models.loader import load_version
from models.registry import CHAMPION, TAG_GATE_REASONS, TAG_PROMOTABLE, ModelRegistry
from pipelines.exceptions import GateNotRun
from pipelines.split_coverage import split_coverage
from pipelines.training import Candidate, judge_on
from pipelines.training_set import read_training_set

if TYPE_CHECKING:
    from mlflow import MlflowClient

TAG_AGAINST = "gate_champion_version"
FLOORED = ("precision", "recall", "f1")
# What the candidate must beat the unsupervised floor on.
ABOVE_UNSUPERVISED = ("f1", "pr_auc")


@dataclass(frozen=True)
class Verdict:
    candidate: Candidate
    promotable: bool
    reasons: tuple[str, ...]
    champion_version: str | None = None
    champion_quality: Quality | None = None

    def summary(self) -> str:
        verdict = "promotable" if self.promotable else "not promotable"
        return f"{self.candidate.kind} run {self.candidate.run_id[:8]} is {verdict}: " + "; ".join(self.reasons)


def best_of(candidates: list[Candidate], metric: str) -> Candidate:
    return max(candidates, key=lambda c: (c.quality.value(metric), c.quality.pr_auc))


def judge_runs(ctx: Context, location: str, run_ids: list[str]) -> Verdict:
    """The gate's verdict on the best of the candidates these MLflow runs trained."""
    candidates = [Candidate.of(ctx.registry.client.get_run(run_id)) for run_id in run_ids]
    return judge(ctx.settings, ctx.spark, ctx.registry, location, candidates)


def judge(
    settings: Settings, spark: SparkSession, registry: ModelRegistry, location: str, candidates: list[Candidate]
) -> Verdict:
    """Pick the best candidate by the configured metric and hold it to the floors and the champion."""
    metric, margin = settings.gate.metric, settings.gate.margin
    best = best_of(candidates, metric)
    failures = split_coverage(read_training_set(spark, location)).gaps(settings.gate.min_test_anomalies)
    notes: list[str] = []
    for name in FLOORED:
        floor = getattr(settings.gate, f"min_{name}")
        if best.quality.value(name) < floor:
            failures.append(f"test {name} {best.quality.value(name):.3f} is below the floor {floor:.3f}")
    if best.floor is not None:
        (notes if _beats_unsupervised(best) else failures).append(
            "test "
            + ", ".join(f"{n} {best.quality.value(n):.3f}" for n in ABOVE_UNSUPERVISED)
            + " vs the per-device z-score's "
            + ", ".join(f"{best.floor.value(n):.3f}" for n in ABOVE_UNSUPERVISED)
        )
    champion = registry.by_alias(CHAMPION)
    champion_quality = None
    if champion is None:
        notes.append("no champion yet: judged on the floors only")
    else:
        try:
            model = load_version(spark, champion)
        except ModelRejected as exc:
            notes.append(f"champion v{champion.version} cannot score this window ({exc}): judged on the floors only")
        else:
            test = read_training_set(spark, location).where("split = 'test'")
            champion_quality = judge_on(model.score, test, champion.threshold)
            ours, theirs = best.quality.value(metric), champion_quality.value(metric)
            comparison = (
                f"test {metric} {ours:.3f} vs champion v{champion.version}'s {theirs:.3f} (margin {margin:.3f})"
            )
            (notes if ours >= theirs + margin else failures).append(comparison)
    if not failures:
        notes.insert(0, f"meets the floors ({', '.join(FLOORED)})")
    verdict = Verdict(
        best, not failures, tuple(failures + notes), champion.version if champion else None, champion_quality
    )
    _record(verdict)
    return verdict


def _beats_unsupervised(candidate: Candidate) -> bool:
    floor = candidate.floor
    return floor is not None and all(candidate.quality.value(n) > floor.value(n) for n in ABOVE_UNSUPERVISED)


def _record(verdict: Verdict) -> None:
    import mlflow

    with mlflow.start_run(run_id=verdict.candidate.run_id):
        mlflow.set_tags(
            {
                TAG_PROMOTABLE: str(verdict.promotable).lower(),
                TAG_GATE_REASONS: "; ".join(verdict.reasons),
                TAG_AGAINST: verdict.champion_version or "",
            }
        )
        if verdict.champion_quality is not None:
            mlflow.log_metrics(verdict.champion_quality.as_metrics(prefix="champion_test_"))


def recorded(client: MlflowClient, candidate: Candidate) -> Verdict:
    """The verdict recorded on a candidate's run by `judge` (for the registration step)."""
    run = client.get_run(candidate.run_id)
    tags = run.data.tags
    if TAG_PROMOTABLE not in tags:
        raise GateNotRun(
            f"run {candidate.run_id} has not been through the evaluation gate; run the evaluate step first"
        )
    metrics = run.data.metrics
    champion_quality = Quality.from_metrics(metrics, "champion_test_") if "champion_test_f1" in metrics else None
    return Verdict(
        candidate,
        tags[TAG_PROMOTABLE] == "true",
        tuple(r for r in tags.get(TAG_GATE_REASONS, "").split("; ") if r),
        tags.get(TAG_AGAINST) or None,
        champion_quality,
    )
