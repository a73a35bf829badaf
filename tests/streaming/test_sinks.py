"""The sinks: the Kafka sink against the embedded broker (one transaction per batch, never left
open) and the lake's Delta tables (each batch once, whatever replays)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from infra.endpoints import admin_client
from infra.lake import Lake
from infra.settings import Settings, load_settings
from streaming.kafka_io import committed_records
from streaming.sinks import BATCH_COMMIT, DeltaBatchWriter, TransactionalKafkaSink

pytestmark = pytest.mark.integration


@pytest.fixture
def sink_settings(kafka: Settings) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    settings = kafka.updated(topic_alerts=f"sink-alerts-{suffix}", topic_dlq=f"sink-dlq-{suffix}")
    admin = admin_client(settings)
    topics = [NewTopic(settings.topic.alerts, 1, 1), NewTopic(settings.topic.dlq, 1, 1)]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)
    return settings


def _failing_after(records: list[tuple[bytes | None, bytes]], count: int) -> Iterator[tuple[bytes | None, bytes]]:
    """Yields `count` records, then fails as a read-back from a lake that lost its DataNode does."""
    yield from records[:count]
    raise OSError("Could not obtain block")


def test_a_batch_whose_records_fail_midway_is_written_once_by_its_retry(sink_settings: Settings) -> None:
    alerts = [(f"dev-{i}".encode(), f"alert-{i}".encode()) for i in range(10)]
    sink = TransactionalKafkaSink(sink_settings, f"sink-test-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(OSError, match="Could not obtain block"):
            sink.publish(0, _failing_after(alerts, 4), [])
        # The retry of the same batch, on the same sink (the job restarts its query, not itself).
        assert sink.publish(0, alerts, [(None, b"\xff\xfe", [("reason", b"invalid_json")])])
        assert not sink.publish(0, alerts, [])  # written: a replay is skipped
    finally:
        sink.close()
    assert sorted(value for _, value, _ in committed_records(sink_settings, sink_settings.topic.alerts)) == sorted(
        value for _, value in alerts
    )
    assert [value for _, value, _ in committed_records(sink_settings, sink_settings.topic.dlq)] == [b"\xff\xfe"]


def _batch(spark: SparkSession, batch_id: int, rows: int, tag: str) -> DataFrame:
    return spark.range(rows).select(
        F.concat(F.lit(f"{batch_id}-"), F.col("id").cast("string")).alias("event_id"),
        F.lit(tag).alias("attempt"),
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.timestamp_seconds(F.lit(1_764_720_000) + F.col("id")).alias("ts"),
        F.lit("2026-12-03").alias("date"),
    )


def test_a_delta_table_holds_each_batch_once_whatever_replays(spark: SparkSession, tmp_path: Path) -> None:
    lake = Lake(load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))
    first = DeltaBatchWriter(spark, lake.root)
    first.write(_batch(spark, 0, 5, "first"), "scored", 0)
    first.write(_batch(spark, 1, 5, "first"), "scored", 1)
    first.write(_batch(spark, 1, 4, "in-process retry"), "scored", 1)
    # A new process replays batch 1 (a crash after its Delta commit, before the checkpoint's
    # commit of the batch), then goes on with batch 2.
    restarted = DeltaBatchWriter(spark, lake.root)
    restarted.expect_replay(1, ["scored"])  # asked of the table in the background, while the query starts
    restarted.write(_batch(spark, 1, 3, "replay"), "scored", 1)
    restarted.write(_batch(spark, 2, 5, "replay"), "scored", 2)

    rows = lake.read_table("scored").to_pandas()
    assert rows.groupby("batch_id")["attempt"].agg(lambda a: sorted(set(a))).to_dict() == {
        0: ["first"],
        1: ["replay"],
        2: ["replay"],
    }
    assert rows["event_id"].is_unique and len(rows) == 5 + 3 + 5
    assert sorted(restarted.read_batch("scored", 1).columns) == ["attempt", "batch_id", "event_id", "ts"]
    assert restarted.read_batch("scored", 1).count() == 3


def test_a_replay_appends_when_the_table_holds_no_commit_of_its_batch(spark: SparkSession, tmp_path: Path) -> None:
    lake = Lake(load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))
    DeltaBatchWriter(spark, lake.root).write(_batch(spark, 0, 5, "first"), "scored", 0)
    # The driver died during batch 1, before its lake commit: the new one's replay of it appends
    # (no search of the table's files for batch 1), then batch 2 appends too.
    restarted = DeltaBatchWriter(spark, lake.root)
    restarted.expect_replay(1, ["scored"])
    restarted.write(_batch(spark, 1, 3, "replay"), "scored", 1)
    restarted.write(_batch(spark, 2, 4, "replay"), "scored", 2)

    history = spark.sql(f"DESCRIBE HISTORY delta.`{restarted.url('scored')}`").orderBy("version").collect()
    assert [(h.userMetadata, h.operationParameters["mode"]) for h in history] == [
        (f"{BATCH_COMMIT}0", "Append"),
        (f"{BATCH_COMMIT}1", "Append"),
        (f"{BATCH_COMMIT}2", "Append"),
    ]
    rows = lake.read_table("scored").to_pandas()
    assert rows["event_id"].is_unique and len(rows) == 5 + 3 + 4


def test_a_python_reader_sees_whole_batches_while_the_stream_commits(spark: SparkSession, tmp_path: Path) -> None:
    lake = Lake(load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))
    writer = DeltaBatchWriter(spark, lake.root)
    writer.write(_batch(spark, 0, 100, "w"), "scored", 0)
    seen: list[dict[int, int]] = []
    done = threading.Event()

    def read_while_writing() -> None:
        while not done.is_set():
            counts = lake.read_table("scored", ["batch_id"]).to_pandas()["batch_id"].value_counts()
            seen.append(counts.to_dict())

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    try:
        for batch_id in range(1, 8):
            writer.write(_batch(spark, batch_id, 100, "w"), "scored", batch_id)
    finally:
        done.set()
        reader.join()
    assert len(seen) > 1
    assert all(set(counts.values()) == {100} for counts in seen), "a reader saw part of a batch"
    assert max(len(counts) for counts in seen) >= 2
