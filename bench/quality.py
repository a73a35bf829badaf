"""Detection quality on held-out windows of simulated history the model never saw.

`held_out_quality` (the `quality` scenario of bench/run.py): the champion on a fresh window of
the steady scenario (another seed: other noise, other anomaly episodes, same fleet), in a
scratch lake and Feast store of its own, featurized by the same pipeline as training and scored
with the champion's own threshold: precision, recall, F1 and PR-AUC, overall and per kind.

`trained_quality` (the `realistic` scenario): a model trained as `warden train` trains one, on
the realistic scenario's history (devices that start one after another, go silent and come back
cold, regimes of their own that shift, faults that last minutes), judged on the day after its
window beside the per-device z-score floor, fitted on the same training history (issue 21).
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from infra.context import Context
from infra.progress import ProgressLine
from infra.secrets import mlflow_password
from infra.settings import Settings
from models import registry
from models.estimators import MODEL_KINDS
from models.evaluation import Quality
from models.loader import load_version
from pipelines.backfill import BackfillParams, backfill
from pipelines.feature_refresh import refresh_features
from pipelines.retrain import retrain
from pipelines.training import judge_on
from pipelines.training_set import Window, build_training_set, read_training_set
from pipelines.unsupervised_floor import zscore_floor


def held_out_quality(ctx: Context, days: int, devices: int, seed: int) -> dict:
    """Precision, recall, F1 and PR-AUC of the champion of `ctx`'s model on `days` of fresh
    history (`seed`)."""
    settings = ctx.settings
    champion = ctx.registry.by_alias(registry.CHAMPION)
    if champion is None:
        raise SystemExit(f"error: {settings.model_name} has no champion; train and promote one first")
    scratch = Path(tempfile.mkdtemp(prefix="warden-quality-"))
    held_out = settings.updated(
        **{
            "home": scratch,
            "lake_root": str(scratch / "lake"),
            "mlflow_password": SecretStr(mlflow_password(settings)),
        }
    )
    try:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        window = Window(end - timedelta(days=days), end)
        fresh = Context.build("warden-quality", held_out)
        backfill(fresh.lake, BackfillParams(days=days, devices=devices, seed=seed, end=end), ProgressLine("history"))
        spark = fresh.spark
        try:
            refresh_features(fresh, window.end, None, ProgressLine("features"))
            progress = ProgressLine("quality")
            progress.update(
                f"scoring {window} with {settings.model_name} v{champion.version} ({champion.kind})", force=True
            )
            model = load_version(spark, champion)
            quality = judge_on(model.score, build_training_set(fresh, window), champion.threshold)
        finally:
            spark.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress.done(f"{quality.rows:,} events, {quality.positives:,} anomalous")
    return {
        "model": {
            "name": champion.name,
            "version": champion.version,
            "kind": champion.kind,
            "threshold": champion.threshold,
        },
        "window": str(window),
        "history": {"days": days, "devices": devices, "seed": seed},
        **quality.as_metrics(prefix=""),
    }


def trained_quality(settings: Settings, scenario: str, devices: int, days: int, seed: int) -> dict:
    """Backfill `days` + 1 days of `scenario` (simulator.scenarios.SCENARIOS), train both kinds on the first `days`
    as `warden train` does, and judge the gate's pick on the last day, which it never saw, with
    the features the stream would have had (statistics and baselines of the days before), beside
    the per-device z-score floor fitted on the same training history."""
    scratch = Path(tempfile.mkdtemp(prefix=f"warden-{scenario}-"))
    trained = settings.updated(
        **{
            "home": scratch,
            "lake_root": str(scratch / "lake"),
            "mlflow_password": SecretStr(mlflow_password(settings)),
            "model_name": f"{settings.model_name}-{scenario}",
            "training_window_days": days,
        }
    )
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    held_out = Window(end - timedelta(days=1), end)
    try:
        ctx = Context.build(f"warden-quality-{scenario}", trained)
        backfill(ctx.lake, BackfillParams(days=days + 1, devices=devices, seed=seed, end=end, scenario=scenario))
        spark = ctx.spark
        try:
            report = retrain(ctx, Window(held_out.start - timedelta(days=days), held_out.start), MODEL_KINDS)
            assert report.version is not None and report.verdict is not None  # noqa: S101 - narrows the type
            version = report.version
            train_split = read_training_set(spark, report.training_set).where("split = 'train'")
            start = held_out.start - timedelta(minutes=trained.feature.window_minutes)
            refresh_features(ctx, held_out.end, start, ProgressLine("features"))
            progress = ProgressLine("quality")
            progress.update(
                f"scoring the held-out day with {trained.model_name} v{version.version} ({version.kind})", force=True
            )
            held = build_training_set(ctx, held_out).cache()
            quality = judge_on(load_version(spark, version).score, held, version.threshold)
            floor = zscore_floor(train_split, held)
            held.unpersist()
        finally:
            spark.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress.done(
        f"{quality.rows:,} events, {quality.positives:,} anomalous: F1 {quality.f1:.3f}, PR-AUC {quality.pr_auc:.3f} "
        f"(per-device z-score: {floor.f1:.3f}, {floor.pr_auc:.3f})"
    )
    best = report.verdict.candidate
    return {
        "model": {
            "name": version.name,
            "version": version.version,
            "kind": version.kind,
            "threshold": version.threshold,
        },
        "history": {"scenario": scenario, "days": days, "devices": devices, "seed": seed},
        "gate": report.verdict.summary(),
        "test_split": {**best.quality.as_metrics(prefix=""), **_floor_metrics(best.floor)},
        **quality.as_metrics(prefix=""),
        **_floor_metrics(floor),
    }


def _floor_metrics(floor: Quality | None) -> dict:
    return {} if floor is None else floor.as_metrics(prefix="floor_")
