"""The floor under streamwarden's fixed cost: what a Spark micro-batch costs on this machine
before the job does any work of its own.

The same bursts as the fixed-cost scenario (about 1,000 simulated events, one at a time, to an
otherwise idle query), read from Kafka exactly as `warden stream` reads them
(`streaming.job.telemetry_records`, the same Spark settings), then, each body a query of its own:

- `count`: counted (a micro-batch with one Spark job that reads its records);
- `parquet`: the raw records appended to a Parquet folder;
- `delta`: appended to a Delta table with the lake's table properties, as the job appends a batch.

No parse, features, scoring, observed metrics or Kafka transaction: whatever the job costs above
`delta` is its own; whatever `delta` costs is the floor of any design that writes each batch to
the lake from a Spark micro-batch. Run by the fixed-cost scenario in the same bench run, as a
process of its own (it owns its Spark session); prints one JSON line with each body's median
batch duration (Spark's `triggerExecution`, the figure the job's batches report).

    .venv/bin/python bench/spark_floor.py [--bursts 12] [--events 1000] [--devices 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from infra.context import Context
from infra.endpoints import admin_client
from infra.lake import table_properties
from infra.progress import ProgressLine
from infra.settings import load_settings
from infra.stack.kafka import KafkaBroker
from infra.waiting import wait_until
from streaming.job import stream_session, telemetry_records
from streaming.simulation import SimulationParams, simulate

BODIES = ("count", "parquet", "delta")


def _raw(records: DataFrame) -> DataFrame:
    return records.select(
        "key",
        "value",
        F.col("topic").alias("source_topic"),
        F.col("partition").alias("source_partition"),
        F.col("offset").alias("source_offset"),
        F.col("timestamp").alias("source_timestamp"),
        F.date_format("timestamp", "yyyy-MM-dd").alias("date"),
    )


def _body(name: str, folder: str) -> Callable[[DataFrame, int], None]:
    # The rejected table's properties, with statistics on the one time column these rows have.
    delta_options = {**table_properties("rejected"), "delta.dataSkippingStatsColumns": "source_timestamp"}

    def count(records: DataFrame, _batch_id: int) -> None:
        records.count()

    def parquet(records: DataFrame, _batch_id: int) -> None:
        _raw(records).write.mode("append").partitionBy("date").parquet(f"{folder}/parquet")

    def delta(records: DataFrame, _batch_id: int) -> None:
        writer = _raw(records).write.format("delta").mode("append").partitionBy("date").options(**delta_options)
        writer.save(f"{folder}/delta")

    return {"count": count, "parquet": parquet, "delta": delta}[name]


def measure(spark: SparkSession, ctx: Context, body: str, bursts: int, events: int, devices: int) -> dict:
    """One query with this body: the median duration of the batches that held about one burst."""
    settings = ctx.settings
    folder = str(settings.home / "spark-floor" / body)
    query = (
        telemetry_records(spark, settings)
        .writeStream.foreachBatch(_body(body, folder))
        .option("checkpointLocation", f"{folder}/checkpoint")
        .trigger(processingTime=f"{settings.stream.trigger_seconds} seconds")
        .start()
    )
    try:
        while query.lastProgress is None:  # its first batch pins "latest": later bursts are read
            time.sleep(0.2)
        read = 0
        for n in range(bursts):
            params = SimulationParams(devices=devices, rate=50 * events, events=events)
            burst = ProgressLine(f"spark floor, {body}, burst {n + 1}/{bursts}")
            offered = simulate(ctx, params, burst).events
            if not wait_until(
                lambda target=read + offered: sum(p["numInputRows"] for p in query.recentProgress) >= target,
                timeout=120,
                interval=0.1,
            ):
                raise SystemExit(f"error: the {body} query did not read a {offered:,}-event burst in 120 s")
            read += offered
            time.sleep(1.0)  # idle between bursts, as in the fixed-cost scenario
        sized = [p for p in query.recentProgress if 0.5 * events <= p["numInputRows"] <= 1.5 * events]
    finally:
        query.stop()
    durations: list[Any] = [p["durationMs"]["triggerExecution"] / 1000 for p in sized]
    return {"count": len(durations), "seconds": statistics.median(durations) if durations else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=12, help="bursts per body (default 12)")
    parser.add_argument("--events", type=int, default=1000, help="events per burst (default 1000)")
    parser.add_argument("--devices", type=int, default=200, help="devices in the fleet (default 200)")
    args = parser.parse_args()
    base = load_settings()
    # A topic of its own, partitioned as the telemetry topic is (`ensure_topics`).
    settings = base.updated(**{"topic_telemetry": f"{base.topic.telemetry}_floor", "stream_starting_offsets": "latest"})
    KafkaBroker(settings).ensure_topics()
    ctx = Context.build("bench-spark-floor", settings, with_kafka=True)
    spark = stream_session(ctx)
    try:
        result = {body: measure(spark, ctx, body, args.bursts, args.events, args.devices) for body in BODIES}
    finally:
        admin_client(settings).delete_topics([settings.topic.telemetry])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
