"""`pipelines.history`: the lake's events are its backfilled telemetry and the stream's scored
rows, read as one; a dataset that is not there is a one-line LakeError, and only then."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.schema import EVENT_FIELDS, LABEL_SCHEMA, SENSOR_COLUMNS, TELEMETRY_TABLE_SCHEMA
from infra.exceptions import LakeError
from infra.lake import Lake
from infra.settings import load_settings
from pipelines.history import read_events, read_labels


def _events(*event_ids: str) -> pa.Table:
    rows = len(event_ids)
    return pa.table(
        {
            "event_id": list(event_ids),
            "device_id": ["dev-1"] * rows,
            "ts": pa.array([datetime(2026, 12, 1, 12, tzinfo=UTC)] * rows, pa.timestamp("us", tz="UTC")),
            **{name: [1.0] * rows for name in SENSOR_COLUMNS},
        },
        schema=TELEMETRY_TABLE_SCHEMA,
    )


def _labels(*event_ids: str) -> pa.Table:
    rows = len(event_ids)
    return pa.table(
        {
            "event_id": list(event_ids),
            "device_id": ["dev-1"] * rows,
            "ts": pa.array([datetime(2026, 12, 1, 12, tzinfo=UTC)] * rows, pa.timestamp("us", tz="UTC")),
            "is_anomaly": [False] * rows,
            "anomaly_type": [None] * rows,
        },
        schema=LABEL_SCHEMA,
    )


def _write_scored(spark: SparkSession, lake: Lake, *event_ids: str) -> None:
    """Rows as the stream writes them: the event's fields among its score, features and batch id."""
    events = spark.createDataFrame(_events(*event_ids).to_pandas())
    scored = events.select(
        F.lit(0.9).alias("score"),
        *EVENT_FIELDS,
        F.lit(7).cast("long").alias("batch_id"),
        F.date_format("ts", "yyyy-MM-dd").alias("date"),
    )
    scored.write.format("delta").partitionBy("date").mode("append").save(lake.url("scored"))


def test_events_are_the_backfilled_and_the_scored_ones(spark: SparkSession, tmp_path: Path) -> None:
    lake = Lake(load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))
    with pytest.raises(LakeError, match=r"^no events under .*: neither telemetry/ nor scored/") as info:
        read_events(spark, lake)
    assert "\n" not in str(info.value)

    _write_scored(spark, lake, "s-1", "s-2")
    assert sorted(r["event_id"] for r in read_events(spark, lake).collect()) == ["s-1", "s-2"]

    lake.append_table("telemetry", _events("b-1"))
    events = read_events(spark, lake)
    assert events.columns == [*EVENT_FIELDS, "date"]
    assert sorted(r["event_id"] for r in events.collect()) == ["b-1", "s-1", "s-2"]
    assert {r["date"] for r in events.collect()} == {"2026-12-01"}


def test_missing_labels_are_one_line_naming_the_fix_and_other_failures_are_not_hidden(
    spark: SparkSession, tmp_path: Path
) -> None:
    lake = Lake(load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))
    with pytest.raises(LakeError, match=r"^labels missing under .*; run `warden backfill`$"):
        read_labels(spark, lake)

    not_parquet = tmp_path / "lake" / "labels"
    not_parquet.mkdir(parents=True)  # a folder with nothing in it is as good as missing
    with pytest.raises(LakeError, match=r"^labels missing under "):
        read_labels(spark, lake)

    # A folder that holds something other than Parquet is not "missing": Spark's own error stands.
    (not_parquet / "part-0.parquet").write_text("not parquet")
    with pytest.raises(Exception) as failed:
        read_labels(spark, lake).collect()
    assert not isinstance(failed.value, LakeError)

    (not_parquet / "part-0.parquet").unlink()
    lake.write(_labels("e-1"), "labels", "labels-{i}.parquet")
    assert [r["event_id"] for r in read_labels(spark, lake).collect()] == ["e-1"]
