"""A standby's dress rehearsal: before it waits for the query, a standby driver scores a batch of
events shaped like its devices' latest readings, as the job scores a batch, into a scratch table.

A fresh driver's first real batch pays for the first query of its shape in its JVM: classes
loaded, the plan's code generated and compiled, then run before the JIT has compiled it, and the
Delta writer's first commit. On two cores a standby's first batch after a takeover took 18-19 s,
the batches after it 2-5 s (tests/streaming/test_standby.py, 4 December 2026). The rehearsal pays
for that while the driver waits, so that a takeover meets a warm JVM. Its events never reach
Kafka, the lake or the checkpoint's state, and its scratch table is removed afterwards; it also
reads the lake's `scored` log once, which the first write after a takeover then only updates.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta

import orjson
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from features.schema import SENSOR_COLUMNS
from infra.progress import ProgressLine
from infra.settings import Settings
from streaming.batch import BatchProcessor
from streaming.parse import parse_events
from streaming.sinks import DeltaBatchWriter
from streaming.state import READING_FIELDS, LastReadings, Reading

REHEARSALS = 3  # the first compiles, the next ones let the JIT compile what runs per row
EVENTS_PER_DEVICE = 4
MAX_DEVICES = 500
# The records of Spark's Kafka source, as `foreachBatch` hands them over.
KAFKA_RECORD = T.StructType(
    [
        T.StructField("key", T.BinaryType()),
        T.StructField("value", T.BinaryType()),
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("timestamp", T.TimestampType()),
        T.StructField("timestampType", T.IntegerType()),
    ]
)


def rehearse(
    settings: Settings, spark: SparkSession, processor: BatchProcessor, readings: LastReadings, progress: ProgressLine
) -> None:
    """Score a few events of each device the query met last, REHEARSALS times, into a scratch table."""
    latest = readings.before(sys.maxsize)  # after the newest batch
    if not latest:
        progress.update("standby: the query has met no device yet, nothing to rehearse with", force=True)
        return
    devices = dict(sorted(latest.items())[:MAX_DEVICES])
    parsed = parse_events(_records(spark, settings, devices), settings.max_event_bytes)
    scratch = settings.home / "stream" / f"rehearsal-{os.getpid()}"
    tables = DeltaBatchWriter(spark, scratch.as_uri())
    try:
        for number in range(1, REHEARSALS + 1):
            started = time.monotonic()
            processor.rehearse(parsed, devices, tables)
            progress.update(
                f"standby: rehearsal {number}/{REHEARSALS}: {len(devices) * EVENTS_PER_DEVICE:,} events scored "
                f"in {time.monotonic() - started:.1f} s",
                force=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The lake's own table: its log read once now, the first write after a takeover reads only
    # the commits made since.
    with contextlib.suppress(AnalysisException):
        spark.read.format("delta").load(processor.tables.url("scored")).schema  # noqa: B018


def _records(spark: SparkSession, settings: Settings, devices: dict[str, Reading]) -> DataFrame:
    """Kafka records of events that follow each device's last reading by a few seconds."""
    now = datetime.now(UTC)
    sensors = [READING_FIELDS.index(sensor) for sensor in SENSOR_COLUMNS]
    rows: list[tuple[object, ...]] = []
    for device, reading in devices.items():
        for step in range(EVENTS_PER_DEVICE):
            ts = now - timedelta(seconds=EVENTS_PER_DEVICE - step)
            event = {
                "event_id": f"rehearsal-{os.getpid()}-{device}-{step}",
                "device_id": device,
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                **{name: reading[index] for name, index in zip(SENSOR_COLUMNS, sensors, strict=True)},
            }
            offset = len(rows)
            rows.append((device.encode(), orjson.dumps(event), settings.topic_telemetry, 0, offset, now, 0))
    return spark.createDataFrame(rows, KAFKA_RECORD).coalesce(settings.stream_batch_tasks)
