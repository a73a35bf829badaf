"""Data validation of the training window: a clean backfill passes, and each kind of damage done to
the lake fails with one line that names it."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark import StorageLevel
from pyspark.sql import SparkSession

from infra.exceptions import ConfigError, LakeError
from infra.lake import PARTITION_COLUMN, Lake
from infra.settings import Settings, load_settings
from pipelines.backfill import BackfillParams, backfill
from pipelines.exceptions import DataValidationError
from pipelines.training_set import Window, labeled_events
from pipelines.validation import validate_frame, validate_history

END = datetime(2026, 11, 20, tzinfo=UTC)
WINDOW = Window(END - timedelta(days=2), END)
EVENTS = 2 * 5 * 144  # two days of five devices, one reading every ten minutes
EXPECTATIONS = 30  # rows, columns, 10 types, 9 not-null, 5 ranges, unique ids, 2 label bounds, freshness
DAMAGED = 12


def lake_with_history(home: Path, **overrides: object) -> Settings:
    settings = load_settings(home=home, lake_root=str(home / "lake"), **{"validation_min_rows": 1000, **overrides})
    backfill(Lake(settings), BackfillParams(days=2, devices=5, interval_s=600, end=END, seed=4))
    return settings


def rewrite_telemetry(settings: Settings, change: Callable[[pa.Table], pa.Table]) -> None:
    """Replace every row of the telemetry table (the window's, all backfilled) by `change` of them."""
    lake = Lake(settings)
    table = lake.read_table("telemetry").drop_columns([PARTITION_COLUMN])
    lake.delete_rows("telemetry", "date IS NOT NULL")
    lake.append_table("telemetry", change(table))


def rewrite_labels(settings: Settings, change: Callable[[pa.Table], pa.Table]) -> None:
    """Replace every file of `labels/` in the window by `change` of its rows."""
    lake = Lake(settings)
    table = lake.read("labels").drop_columns([PARTITION_COLUMN])
    lake.remove(
        "labels", "", [f"{WINDOW.start + timedelta(days=d):%Y-%m-%d}" for d in range((END - WINDOW.start).days)]
    )
    lake.write(change(table), "labels", "damaged-{i}.parquet")


def with_values(table: pa.Table, column: str, value: object, rows: int = DAMAGED) -> pa.Table:
    """`table` with `column` set to `value` in its first `rows` rows."""
    field = table.schema.field(column)
    head = pa.array([value] * rows, type=field.type)
    values = pa.concat_arrays([head, table[column].slice(rows).combine_chunks()])
    return table.set_column(table.schema.get_field_index(column), field.with_nullable(True), values)


def out_of_range_temperature(settings: Settings) -> Window:
    rewrite_telemetry(settings, lambda t: with_values(t, "temperature", 2500.0))
    return WINDOW


def nulls_in_humidity(settings: Settings) -> Window:
    rewrite_telemetry(settings, lambda t: with_values(t, "humidity", None))
    return WINDOW


def replayed_events(settings: Settings) -> Window:
    """The same events written twice, as an at-least-once writer may."""
    lake = Lake(settings)
    replayed = lake.read_table("telemetry").drop_columns([PARTITION_COLUMN]).slice(0, DAMAGED)
    lake.append_table("telemetry", replayed)
    return WINDOW


def no_anomalies(settings: Settings) -> Window:
    def normal(labels: pa.Table) -> pa.Table:
        rows = labels.num_rows
        return with_values(with_values(labels, "is_anomaly", False, rows), "anomaly_type", None, rows)

    rewrite_labels(settings, normal)
    return WINDOW


def a_day_without_data(settings: Settings) -> Window:
    return Window(WINDOW.start, END + timedelta(days=1))


@pytest.fixture
def west_of_utc() -> Iterator[None]:
    """pyspark hands timestamps to Python in the process's local zone; west of UTC, a naive
    reading of them makes fresh data look hours stale. (The other tests run in the machine's zone.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "America/Los_Angeles")
        time.tzset()
        yield
    time.tzset()


@pytest.mark.usefixtures("west_of_utc")
def test_clean_history_passes(spark: SparkSession, tmp_path: Path) -> None:
    report = validate_history(settings := lake_with_history(tmp_path), spark, Lake(settings), WINDOW)
    assert report.failures == []
    assert report.success is True
    assert report.rows == EVENTS
    assert report.window == str(WINDOW)
    assert report.summary() == f"passed {EXPECTATIONS}/{EXPECTATIONS} expectations on {EVENTS:,} rows"
    stored = json.loads(json.dumps(report.as_dict()))
    assert stored["success"] is True
    assert len(stored["results"]["results"]) == EXPECTATIONS
    assert all(result["success"] for result in stored["results"]["results"])


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (out_of_range_temperature, re.escape(f"temperature: {DAMAGED} values outside [-273.15, 2000.0]")),
        (nulls_in_humidity, re.escape(f"humidity: {DAMAGED} nulls (0.833 %), at most 0 % allowed")),
        (replayed_events, f"event_id: {2 * DAMAGED} rows share their event_id with another row"),
        (no_anomalies, "is_anomaly: 0 % of events are anomalies, expected at least 0.1 %"),
        (
            a_day_without_data,
            r"ts: newest event 2026-11-19 23:\d\d UTC is 24\.\d h before the window end, at most 6 h allowed",
        ),
    ],
    ids=["out-of-range", "nulls", "duplicate-ids", "no-anomalies", "stale"],
)
def test_damaged_history_fails_naming_the_problem(
    spark: SparkSession, tmp_path: Path, damage: Callable[[Settings], Window], named: str
) -> None:
    settings = lake_with_history(tmp_path)
    report = validate_history(settings, spark, Lake(settings), damage(settings))
    assert report.success is False
    assert len(report.failures) == 1, report.failures
    assert re.fullmatch(named, report.failures[0]), report.failures[0]
    assert report.summary() == f"failed 1/{EXPECTATIONS} on {report.rows:,} rows: {report.failures[0]}"
    message = str(DataValidationError(report))
    assert report.failures[0] in message
    assert "\n" not in message


def test_thresholds_are_settings(spark: SparkSession, tmp_path: Path) -> None:
    settings = lake_with_history(tmp_path, validation_max_null_fraction=0.01, validation_min_rows=5000)
    report = validate_history(settings, spark, Lake(settings), nulls_in_humidity(settings))
    # 12 nulls in 1,440 rows are within 1 %; 1,440 rows are not 5,000.
    assert report.failures == [f"window: {EVENTS:,} labeled events, expected at least 5,000"]


def test_validation_leaves_no_cached_data_behind(spark: SparkSession, tmp_path: Path) -> None:
    settings = lake_with_history(tmp_path)
    frame = labeled_events(spark, Lake(settings), WINDOW)
    assert validate_frame(frame, settings, WINDOW).success is True
    assert frame.storageLevel == StorageLevel.NONE


def test_missing_lake_is_one_line(spark: SparkSession, tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, lake_root=str(tmp_path / "empty"))
    with pytest.raises(LakeError, match="run `warden backfill`") as error:
        validate_history(settings, spark, Lake(settings), WINDOW)
    assert "\n" not in str(error.value)


def test_contradictory_label_bounds_are_refused(spark: SparkSession, tmp_path: Path) -> None:
    settings = lake_with_history(tmp_path, validation_min_anomaly_fraction=0.5, validation_max_anomaly_fraction=0.3)
    with pytest.raises(ConfigError, match="WARDEN_VALIDATION_MIN_ANOMALY_FRACTION"):
        validate_history(settings, spark, Lake(settings), WINDOW)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WARDEN_VALIDATION_MAX_NULL_FRACTION", "1.5"),
        ("WARDEN_VALIDATION_MAX_ANOMALY_FRACTION", "-0.1"),
        ("WARDEN_VALIDATION_MAX_STALENESS_HOURS", "0"),
        ("WARDEN_VALIDATION_MIN_ROWS", "many"),
    ],
)
def test_bad_thresholds_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()
