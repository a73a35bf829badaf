"""A standby's dress rehearsal: before it waits for the query, a standby driver scores the
newest events of the telemetry topic, read from Kafka as the query reads them, as the job scores
a batch, into a scratch table.

A fresh driver's first real batch pays for the first query of its shape in its JVM: classes
loaded (Spark's Kafka reader and the Kafka client among them), the plan's code generated and
compiled, then run before the JIT has compiled it, and the Delta writer's first commit. On two
cores a standby's first batch after a takeover took 18-19 s, the batches after it 2-5 s
(tests/streaming/test_standby.py, 4 December 2026). The rehearsal pays for that while the driver
waits, so that a takeover meets a warm JVM. What it scores never reaches Kafka, the lake or the
checkpoint's state, and its scratch tables are removed afterwards. A last pass with records that
are no events goes the way of a batch's dead letters: written to a scratch `rejected`, made dead
letters (the batch after a takeover took 11-13 s when it held its driver's first dead letters).
It also reads the logs of the lake's `scored` and `rejected` once, which the first writes after
a takeover then only update.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from infra.progress import ProgressLine
from infra.settings import Settings
from streaming.batch import LAKE_TABLES, BatchProcessor
from streaming.kafka_io import end_offsets, kafka_source_options
from streaming.parse import parse_events
from streaming.sinks import DeltaBatchWriter
from streaming.state import LastReadings

REHEARSALS = 3  # the first compiles, the next ones let the JIT compile what runs per row
# About a steady batch at a few thousand events/s: enough rows for the JIT's optimizing compiler
# (thousands of calls of what runs per row), few enough that the active driver barely notices.
REHEARSAL_EVENTS = 6_000
MAX_DEVICES = 500
NOT_AN_EVENT = bytearray(b"a standby's rehearsal: not an event ")


def rehearse(
    settings: Settings, spark: SparkSession, processor: BatchProcessor, readings: LastReadings, progress: ProgressLine
) -> None:
    """Score the topic's REHEARSAL_EVENTS newest events against the readings of the devices the
    query met last, REHEARSALS times, into a scratch table."""
    latest = readings.before(sys.maxsize)  # after the newest batch
    if not latest:
        progress.update("standby: the query has met no device yet, nothing to rehearse with", force=True)
        return
    devices = dict(sorted(latest.items())[:MAX_DEVICES])
    parsed = parse_events(_newest_records(spark, settings, REHEARSAL_EVENTS), settings.max_event_bytes)
    scratch = settings.home / "stream" / f"rehearsal-{os.getpid()}"
    tables = DeltaBatchWriter(spark, scratch.as_uri())
    try:
        for number in range(1, REHEARSALS + 1):
            started = time.monotonic()
            if number == REHEARSALS:
                # As a takeover's first batch: the batch the checkpoint left planned, which the
                # table's log is asked about (`DESCRIBE HISTORY`) before an append.
                tables.expect_replay(number, ["scored"])
            # A new batch id each time: appends, as a takeover's first batch most often is.
            processor.rehearse(parsed, devices, tables, number)
            progress.update(
                f"standby: rehearsal {number}/{REHEARSALS}: the topic's newest events scored "
                f"in {time.monotonic() - started:.1f} s",
                force=True,
            )
        # Records that are no events (the newest of each partition, behind a prefix that is no
        # JSON), as a batch's dead letters go: written to `rejected`, made dead letters. Not a literal
        # record: Spark would fold its parse at planning, and skip the write's observations.
        started = time.monotonic()
        newest = _newest_records(spark, settings, 1)
        malformed = newest.withColumn("value", F.concat(F.lit(NOT_AN_EVENT), F.col("value")))
        processor.rehearse(parse_events(malformed, settings.max_event_bytes), devices, tables, REHEARSALS + 1)
        progress.update(
            f"standby: rehearsal of dead letters: records that are no events written to a scratch table "
            f"in {time.monotonic() - started:.1f} s",
            force=True,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The lake's own tables: their logs read once now, the first write after a takeover reads
    # only the commits made since.
    for table in LAKE_TABLES:
        with contextlib.suppress(AnalysisException):  # not written yet
            spark.read.format("delta").load(processor.tables.url(table)).schema  # noqa: B018


def _newest_records(spark: SparkSession, settings: Settings, events: int) -> DataFrame:
    """About `events` of the telemetry topic's newest records, spread over its partitions (one
    each at least), as Spark's Kafka source reads them (a consumer per partition, as each batch of
    the query has)."""
    end = end_offsets(settings, settings.topic.telemetry).by_partition
    per_partition = math.ceil(events / max(len(end), 1))
    offsets = {
        bound: json.dumps({settings.topic.telemetry: {str(p): edge for p, edge in edges.items()}})
        for bound, edges in (
            ("startingOffsets", {p: max(high - per_partition, 0) for p, high in end.items()}),
            ("endingOffsets", end),
        )
    }
    # Records that retention deleted meanwhile are simply not rehearsed with.
    records = (
        spark.read.format("kafka")
        .options(**kafka_source_options(settings), **offsets)
        .option("failOnDataLoss", "false")
        .load()
    )
    return records.coalesce(settings.stream.batch_tasks)
