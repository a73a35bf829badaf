"""Detection quality of the champion on a held-out window of simulated history it never saw.

A fresh window (another seed: other noise, other anomaly episodes, same fleet) goes into a
scratch lake and Feast store of its own, is featurized by the same pipeline as training, and
is scored by the champion with its own threshold: precision, recall, F1 and PR-AUC, overall
and per anomaly kind. One of the scenarios of bench/run.py.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from infra.progress import ProgressLine
from infra.settings import Settings
from infra.spark import spark_session
from infra.stack.mlflow import mlflow_password
from models import registry
from models.evaluation import evaluate
from models.loader import load_version
from models.scoring import SCORE
from pipelines.backfill import BackfillParams, backfill
from pipelines.feature_refresh import refresh_features
from pipelines.training_set import Window, build_training_set


def held_out_quality(settings: Settings, days: int, devices: int, seed: int) -> dict:
    """Precision, recall, F1 and PR-AUC of the champion on `days` of fresh history (`seed`)."""
    client = registry.configure_mlflow(settings)
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    if champion is None:
        raise SystemExit(f"error: {settings.model_name} has no champion; train and promote one first")
    scratch = Path(tempfile.mkdtemp(prefix="warden-quality-"))
    held_out = settings.model_copy(
        update={
            "home": scratch,
            "lake_root": str(scratch / "lake"),
            "mlflow_password": SecretStr(mlflow_password(settings)),
        }
    )
    try:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        window = Window(end - timedelta(days=days), end)
        backfill(held_out, BackfillParams(days=days, devices=devices, seed=seed, end=end), ProgressLine("history"))
        spark = spark_session(held_out, "warden-quality", with_kafka=False)
        try:
            refresh_features(held_out, spark, window.end, None, ProgressLine("features"))
            progress = ProgressLine("quality")
            progress.update(
                f"scoring {window} with {settings.model_name} v{champion.version} ({champion.kind})", force=True
            )
            model = load_version(spark, champion)
            scored = (
                model.score(build_training_set(held_out, spark, window))
                .select("label", SCORE, "anomaly_type")
                .toPandas()
            )
        finally:
            spark.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    quality = evaluate(
        scored["label"].to_numpy(), scored[SCORE].to_numpy(), champion.threshold, scored["anomaly_type"].to_numpy()
    )
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
