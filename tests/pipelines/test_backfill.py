"""`warden backfill` writes date-partitioned Parquet that Spark reads with the contract schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from features.schema import SENSOR_COLUMNS
from infra.lake import Lake
from infra.settings import load_settings
from pipelines.backfill import BackfillParams, backfill

END = datetime(2026, 11, 20, tzinfo=UTC)


def test_backfill_is_read_by_spark_with_the_contract_schema(spark: SparkSession, tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, lake_root=str(tmp_path / "lake"))
    lake = Lake(settings)
    report = backfill(lake, BackfillParams(days=2, devices=5, interval_s=600, end=END, seed=4))
    assert report.events == 2 * 5 * 144

    telemetry = spark.read.format("delta").load(lake.url("telemetry"))
    fields = {f.name: f.dataType for f in telemetry.schema.fields}
    assert fields["event_id"] == T.StringType()
    assert fields["device_id"] == T.StringType()
    assert fields["ts"] == T.TimestampType()
    assert all(fields[name] == T.DoubleType() for name in SENSOR_COLUMNS)
    assert telemetry.count() == report.events
    dates = sorted(str(r["date"]) for r in telemetry.select("date").distinct().collect())
    assert dates == ["2026-11-18", "2026-11-19"]

    labels = spark.read.parquet(lake.url("labels"))
    joined = telemetry.join(labels.select("event_id", "is_anomaly"), "event_id")
    assert joined.count() == report.events
    assert labels.filter("is_anomaly").count() == sum(report.anomalies.values())


def test_backfill_rerun_replaces_its_partitions(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, lake_root=str(tmp_path / "lake"))
    params = BackfillParams(days=1, devices=3, interval_s=3600, end=END)
    backfill(Lake(settings), params)
    backfill(Lake(settings), params)
    assert Lake(settings).read_table("telemetry").num_rows == 3 * 24


def test_unwritable_lake_is_one_line(tmp_path: Path) -> None:
    from infra.exceptions import LakeError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings = load_settings(home=tmp_path, lake_root=str(blocker / "lake"))
    with pytest.raises(LakeError, match="not writable"):
        backfill(Lake(settings), BackfillParams(days=1, devices=1))


def test_a_realistic_backfill_has_silent_devices_and_labels_for_every_event(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, lake_root=str(tmp_path / "lake"))
    steady = backfill(Lake(settings), BackfillParams(days=2, devices=5, interval_s=300, end=END, seed=4))
    realistic = backfill(
        Lake(settings), BackfillParams(days=2, devices=5, interval_s=300, end=END, seed=4, scenario="realistic")
    )
    # The rerun replaced the steady history: only the realistic one is left, with its silences.
    lake = Lake(settings)
    assert lake.read_table("telemetry").num_rows == realistic.events < steady.events == 2 * 5 * 288
    labels = lake.read("labels").to_pandas()
    assert len(labels) == realistic.events and labels["is_anomaly"].sum() == sum(realistic.anomalies.values())
