"""Retraining at fleet scale (the `training` scenario of bench/run.py, issue 22).

A fleet's history in a scratch lake (`warden backfill`, the steady scenario at one reading a
minute), then `warden train` as a user runs it: its own process, started with the default
settings, so that its peak memory is its own. The figures come from what the run records in
MLflow (each step's time and the sampled peak resident memory of the Python process and of its
largest child, the Spark driver's JVM) and from the wall clock around the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from infra.context import Context
from infra.progress import ProgressLine
from infra.secrets import mlflow_password
from infra.settings import Settings
from models import registry
from pipelines.backfill import BackfillParams, backfill

_USAGE = ("seconds", "peak_rss_mb_python", "peak_rss_mb_child")


def fleet_training(settings: Settings, devices: int, days: int, lake_root: str | None = None, seed: int = 11) -> dict:
    """Backfill `days` of `devices`, run `warden train` on it; its time, memory and quality.

    The lake is a scratch folder, or `lake_root` (a folder of its own on HDFS, removed after);
    the Spark master is the configured one (`local[*]` or the embedded cluster)."""
    scratch = Path(tempfile.mkdtemp(prefix="warden-training-"))
    fleet = settings.updated(
        **{
            "home": scratch,
            "lake_root": lake_root or str(scratch / "lake"),
            "mlflow_password": SecretStr(mlflow_password(settings)),
            "model_name": f"{settings.model_name}-fleet-{devices}x{days}",
            "training_window_days": days,
        }
    )
    # The backfill's lake and the registry the run's records are read from; `warden train` builds its own.
    ctx = Context.build("warden-bench-training", fleet)
    progress = ProgressLine("training")
    try:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        started = time.monotonic()
        events = backfill(ctx.lake, BackfillParams(days=days, devices=devices, seed=seed, end=end, interval_s=60.0))
        backfill_seconds = time.monotonic() - started
        log = scratch / "warden-train.log"
        progress.update(f"warden train on {events.events:,} events; its output in {log}", force=True)
        started, started_ms = time.monotonic(), int(time.time() * 1000)
        with log.open("w") as out:
            finished = subprocess.run(  # noqa: S603 - our own command line
                [str(Path(sys.executable).parent / "warden"), "train"],
                env={**os.environ, **fleet.to_env()},
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        train_seconds = time.monotonic() - started
        if finished.returncode != 0:
            tail = log.read_text().splitlines()[-5:]
            raise SystemExit(f"error: warden train failed ({finished.returncode}):\n" + "\n".join(tail))
        result = {
            "devices": devices,
            "days": days,
            "events": events.events,
            "backfill_seconds": round(backfill_seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "settings": {
                "spark_master": fleet.spark.master,
                "lake": fleet.lake_url,
                "spark_driver_memory": fleet.spark.driver_memory,
                "xgb_max_rows": fleet.xgb.max_rows,
                "rf_num_trees": fleet.rf.num_trees,
            },
            **_recorded(ctx, started_ms),
        }
    finally:
        if lake_root is not None:
            ctx.lake.fs.rm(ctx.lake.base, recursive=True)
        shutil.rmtree(scratch, ignore_errors=True)
    progress.done(
        f"{devices} devices x {days} days ({result['events']:,} events): warden train {train_seconds / 60:.1f} min, "
        f"peak memory python {result['peak_mb']['python'] / 1024:.1f} GB, JVM {result['peak_mb']['child'] / 1024:.1f} GB"
    )
    return result


def _recorded(ctx: Context, since_ms: int) -> dict:
    """Each step's time and peak memory, and the candidates' quality, as the runs started since
    `since_ms` (this training's; an earlier bench run logged to the same experiment) logged them."""
    client = ctx.registry.client
    experiment = client.get_experiment_by_name(ctx.registry.name)
    if experiment is None:
        raise SystemExit(f"error: warden train recorded nothing in MLflow (no experiment {ctx.registry.name})")
    runs = client.search_runs([experiment.experiment_id], f"attributes.start_time >= {since_ms}")
    steps: dict[str, dict[str, float]] = {}
    quality: dict[str, dict[str, float]] = {}
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        if tags.get("stage") == "validation":
            steps["validate"] = {name: metrics[name] for name in _USAGE}
        elif tags.get("stage") == "training_set":
            for prefix, step in (("refresh_", "features"), ("build_", "training set")):
                steps[step] = {name: metrics[prefix + name] for name in _USAGE}
        elif registry.TAG_KIND in tags:
            kind = tags[registry.TAG_KIND]
            for prefix, step in (("fit_", f"fit {kind}"), ("judge_", f"judge {kind}")):
                steps[step] = {name: metrics[prefix + name] for name in _USAGE}
            quality[kind] = {
                name: metrics[f"test_{name}"] for name in ("f1", "pr_auc", "precision", "recall", "rows")
            } | {"xgb_rows_expected": float(run.data.params.get("xgb_rows_expected", 0))}
    order = [
        "validate",
        "features",
        "training set",
        *(f"{verb} {kind}" for kind in sorted(quality) for verb in ("fit", "judge")),
    ]
    steps = {name: steps[name] for name in order if name in steps}
    peak = {
        "python": max(step["peak_rss_mb_python"] for step in steps.values()),
        "child": max(step["peak_rss_mb_child"] for step in steps.values()),
    }
    return {"steps": steps, "peak_mb": peak, "quality": quality}
