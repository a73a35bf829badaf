"""Sustained throughput of `warden stream` on a pre-loaded backlog, in events per minute.

A scratch WARDEN_HOME (its own lake, Feast store, checkpoints and topics) gets a day of history,
fresh online statistics and a backlog of N events in its telemetry topic. Each run starts the real
`warden stream` on a fresh checkpoint, lets it drain the backlog and stops it with SIGTERM; the
rate is the events of every batch but the first (JVM warm-up) over the time those batches took,
from the stream's own per-batch records. Prints min / median / max of the runs.

    .venv/bin/python bench/throughput.py [--events 2400000] [--devices 200] [--runs 3]

Needs the stack up (`warden up`: Kafka and MLflow) and a champion.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from infra.progress import ProgressLine
from infra.settings import PROJECT_ROOT, Settings, get_settings
from infra.spark import spark_session
from infra.stack.kafka import KafkaBroker, admin_client
from infra.stack.mlflow import mlflow_password
from models import registry
from pipelines.backfill import BackfillParams, backfill
from pipelines.feature_refresh import refresh_features
from pipelines.training import git_commit
from streaming.metrics import metrics_file
from streaming.simulation import SimulationParams, simulate


def scratch_settings(settings: Settings, home: Path) -> Settings:
    return settings.model_copy(
        update={
            "home": home,
            "lake_root": str(home / "lake"),
            "mlflow_password": SecretStr(mlflow_password(settings)),
            "topic_telemetry": "bench_telemetry",
            "topic_alerts": "bench_alerts",
            "topic_dlq": "bench_dlq",
            "metrics_port": settings.metrics_port + 1,
        }
    )


def prepare(bench: Settings, events: int, devices: int) -> None:
    backfill(bench, BackfillParams(days=1, devices=devices, interval_s=300), ProgressLine("history"))
    spark = spark_session(bench, "warden-bench-features", with_kafka=False)
    refresh_features(bench, spark, datetime.now(UTC), None, ProgressLine("features"))
    spark.stop()
    KafkaBroker(bench).ensure_topics()
    simulate(bench, SimulationParams(devices=devices, rate=300_000, events=events), ProgressLine("backlog"))


def start_stream(bench: Settings, starting_offsets: str, log: Path) -> subprocess.Popen[bytes]:
    """The real `warden stream` on a fresh checkpoint and an empty metrics file."""
    shutil.rmtree(bench.checkpoint_dir, ignore_errors=True)
    metrics_file(bench).unlink(missing_ok=True)
    env = {**os.environ, **bench.to_env(), "WARDEN_STREAM_STARTING_OFFSETS": starting_offsets}
    return subprocess.Popen(  # noqa: S603
        [str(Path(sys.executable).with_name("warden")), "stream"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def one_run(bench: Settings, events: int, number: int) -> dict:
    log = bench.home / f"stream-run-{number}.log"
    stream = start_stream(bench, "earliest", log)
    progress = ProgressLine(f"run {number}")
    records: list[dict] = []
    try:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            if stream.poll() is not None:
                raise SystemExit(f"error: the stream exited with code {stream.returncode}; see {log}")
            path = metrics_file(bench)
            records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
            records = [r for r in records if "input_rows" in r and r["input_rows"]]
            done = sum(r["input_rows"] for r in records)
            progress.update(f"{done:,}/{events:,} events in {len(records)} batches")
            if done >= events:
                break
            time.sleep(1.0)
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(180)
    steady = records[1:]
    seconds = sum(r["batch_duration_ms"] for r in steady) / 1000
    rows = sum(r["input_rows"] for r in steady)
    per_minute = rows / seconds * 60 if seconds else 0.0
    progress.done(f"{per_minute:,.0f} events/min over {len(steady)} batches after the first ({rows:,} events in {seconds:.1f} s)")
    # Where a batch's time goes: our phases, and the rest of Spark's trigger (offsets, commit).
    phases = {name: statistics.median(r["phases_ms"].get(name, 0.0) for r in steady) for name in steady[0]["phases_ms"]} if steady else {}
    phases["outside foreachBatch"] = statistics.median(r["batch_duration_ms"] - sum(r["phases_ms"].values()) for r in steady) if steady else 0.0
    return {
        "events_per_minute": per_minute,
        "batches": len(records),
        "steady_rows": rows,
        "steady_seconds": seconds,
        "median_phase_ms": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_400_000, help="backlog size (default 2,400,000)")
    parser.add_argument("--devices", type=int, default=200, help="devices in the fleet (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    args = parser.parse_args()

    settings = get_settings()
    if registry.version_by_alias(registry.configure_mlflow(settings), settings.model_name, registry.CHAMPION) is None:
        raise SystemExit(f"error: {settings.model_name} has no champion; train and promote one first")
    bench = scratch_settings(settings, Path(tempfile.mkdtemp(prefix="warden-bench-")))
    try:
        prepare(bench, args.events, args.devices)
        runs = [one_run(bench, args.events, n + 1) for n in range(args.runs)]
    finally:
        admin_client(bench).delete_topics([bench.topic_telemetry, bench.topic_alerts, bench.topic_dlq])
        shutil.rmtree(bench.home, ignore_errors=True)
    rates = [r["events_per_minute"] for r in runs]
    result = {
        "scenario": "backlog throughput",
        "events": args.events,
        "devices": args.devices,
        "max_offsets_per_trigger": settings.stream_max_offsets_per_trigger,
        "runs": runs,
        "events_per_minute": {"min": min(rates), "median": statistics.median(rates), "max": max(rates)},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "commit": git_commit(),
    }
    out = PROJECT_ROOT / "bench" / "results" / f"throughput-{datetime.now(UTC):%Y%m%d-%H%M}-{result['commit'][:8]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    summary = result["events_per_minute"]
    print(
        f"\nthroughput over {args.runs} runs of a {args.events:,}-event backlog: median {summary['median']:,.0f} "
        f"events/min (min {summary['min']:,.0f}, max {summary['max']:,.0f}); paper: 3,200,000 on 24 cores"
    )
    print(f"written to {out.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
