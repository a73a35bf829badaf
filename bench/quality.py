"""Detection quality of the champion on a held-out window of simulated history it never saw.

A fresh window (another seed: other noise, other anomaly episodes, same fleet) goes into a
scratch lake and Feast store of its own, is featurized by the same pipeline as training, and
is scored by the champion with its own threshold. Prints precision, recall, F1 and PR-AUC,
overall and per anomaly kind, and writes bench/results/quality-<date>-<commit>.json.

    .venv/bin/python bench/quality.py [--days 1] [--devices 50] [--seed 99]

Needs the stack up (`warden up`) and a champion.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from infra.progress import ProgressLine
from infra.settings import PROJECT_ROOT, get_settings
from infra.spark import spark_session
from infra.stack.mlflow import mlflow_password
from models import registry
from models.evaluation import evaluate
from models.loader import load_version
from models.scoring import SCORE
from pipelines.backfill import BackfillParams, backfill
from pipelines.feature_refresh import refresh_features
from pipelines.training import git_commit
from pipelines.training_set import Window, build_training_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1, help="length of the held-out window (default 1)")
    parser.add_argument("--devices", type=int, default=50, help="devices in the window (default 50)")
    parser.add_argument("--seed", type=int, default=99, help="seed of the held-out history (default 99)")
    args = parser.parse_args()

    settings = get_settings()
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
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = Window(end - timedelta(days=args.days), end)
    params = BackfillParams(days=args.days, devices=args.devices, seed=args.seed, end=end)
    backfill(held_out, params, ProgressLine("history"))
    spark = spark_session(held_out, "warden-quality", with_kafka=False)
    refresh_features(held_out, spark, window.end, None, ProgressLine("features"))
    progress = ProgressLine("score")
    progress.update(f"scoring {window} with {settings.model_name} v{champion.version} ({champion.kind})", force=True)
    model = load_version(spark, champion)
    scored = model.score(build_training_set(held_out, spark, window)).select("label", SCORE, "anomaly_type").toPandas()
    quality = evaluate(
        scored["label"].to_numpy(), scored[SCORE].to_numpy(), champion.threshold, scored["anomaly_type"].to_numpy()
    )
    progress.done(f"{quality.rows:,} events, {quality.positives:,} anomalous")

    result = {
        "model": {"name": champion.name, "version": champion.version, "kind": champion.kind, "threshold": champion.threshold},
        "window": str(window),
        "history": {"days": args.days, "devices": args.devices, "seed": args.seed},
        "quality": quality.as_metrics(prefix=""),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "commit": git_commit(),
    }
    out = PROJECT_ROOT / "bench" / "results" / f"quality-{end:%Y%m%d}-{result['commit'][:8]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{settings.model_name} v{champion.version} ({champion.kind}) on the held-out window {window}")
    print("| metric | value |\n|---|---|")
    for name in ("precision", "recall", "f1", "pr_auc"):
        print(f"| {name} | {quality.value(name):.3f} |")
    for kind, recall in sorted(quality.recall_by_kind.items()):
        print(f"| recall on {kind} | {recall:.3f} |")
    print(f"\nwritten to {out.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
