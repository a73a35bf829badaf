"""Latency of `warden stream` at fixed offered rates: event time and Kafka time to the sinks.

Same scratch setup as throughput.py. For each rate, the stream starts on a fresh checkpoint at
the end of the topic, the simulator offers that rate for a while, and the stream's per-batch
records give the latency percentiles (event `ts` → rows in the lake and alerts in Kafka, and
Kafka timestamp → sinks), weighted by batch size over the batches after the first.

    .venv/bin/python bench/latency.py --rate 26000 --rate 13000 [--seconds 60] [--devices 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from throughput import prepare, scratch_settings, start_stream

from infra.progress import ProgressLine
from infra.settings import PROJECT_ROOT, Settings, get_settings
from infra.stack.kafka import admin_client
from pipelines.training import git_commit
from streaming.metrics import metrics_file
from streaming.simulation import SimulationParams, simulate


def weighted(records: list[dict], key: str, quantile: str) -> float:
    rows = sum(r["scored_rows"] for r in records)
    return sum(r[key][quantile] * r["scored_rows"] for r in records) / rows if rows else float("nan")


def at_rate(bench: Settings, rate: float, seconds: float, devices: int) -> dict:
    stream = start_stream(bench, "latest", bench.home / f"stream-{rate:.0f}.log")
    try:
        # Wait for the query's first (empty) batch, so the offered events are all read live.
        deadline = time.monotonic() + 180
        while not metrics_file(bench).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        simulate(bench, SimulationParams(devices=devices, rate=rate, duration=seconds), ProgressLine(f"offer {rate:,.0f}/s"))
        time.sleep(15)  # let the last batches land
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(180)
    records = [json.loads(line) for line in metrics_file(bench).read_text().splitlines()]
    records = [r for r in records if r.get("scored_rows")][1:]
    return {
        "offered_per_second": rate,
        "batches": len(records),
        "event_to_sink_ms": {q: weighted(records, "latency_ms", q) for q in ("p50", "p95", "p99")},
        "kafka_to_sink_ms": {q: weighted(records, "kafka_latency_ms", q) for q in ("p50", "p95", "p99")},
        "mean_batch_ms": sum(r["batch_duration_ms"] for r in records) / max(len(records), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, action="append", required=True, help="offered events/s (repeatable)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each rate is offered (default 60)")
    parser.add_argument("--devices", type=int, default=200, help="devices in the fleet (default 200)")
    args = parser.parse_args()
    settings = get_settings()
    bench = scratch_settings(settings, Path(tempfile.mkdtemp(prefix="warden-bench-")))
    try:
        prepare(bench, 1000, args.devices)
        results = [at_rate(bench, rate, args.seconds, args.devices) for rate in args.rate]
    finally:
        admin_client(bench).delete_topics([bench.topic_telemetry, bench.topic_alerts, bench.topic_dlq])
        shutil.rmtree(bench.home, ignore_errors=True)
    out = PROJECT_ROOT / "bench" / "results" / f"latency-{datetime.now(UTC):%Y%m%d-%H%M}-{git_commit()[:8]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results, "cores": os.cpu_count(), "commit": git_commit()}, indent=2))
    print("\n| offered events/s | batches | mean batch | event→sink p50 / p95 / p99 | Kafka→sink p50 |")
    print("|---|---|---|---|---|")
    for r in results:
        e, k = r["event_to_sink_ms"], r["kafka_to_sink_ms"]
        print(
            f"| {r['offered_per_second']:,.0f} | {r['batches']} | {r['mean_batch_ms'] / 1000:.2f} s | "
            f"{e['p50'] / 1000:.2f} / {e['p95'] / 1000:.2f} / {e['p99'] / 1000:.2f} s | {k['p50'] / 1000:.2f} s |"
        )
    print(f"written to {out.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
