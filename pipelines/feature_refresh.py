"""Feature refresh: rolling device statistics from the lake → Feast offline source → online store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.logic import window_stats
from features.store import apply_definitions, feature_store, materialize
from infra.lake import Lake
from infra.progress import ProgressLine
from infra.settings import Settings
from pipelines.history import read_events

STATS_DATASET = "feast/device_stats"


@dataclass(frozen=True)
class RefreshReport:
    start: datetime
    end: datetime
    rows: int
    devices: int


def refresh_features(
    settings: Settings,
    spark: SparkSession,
    end: datetime,
    start: datetime | None = None,
    progress: ProgressLine | None = None,
) -> RefreshReport:
    """Compute the statistics of grid points in (start, end] from the lake's events, write
    them as one Parquet file of the Feast offline source, and materialize them online (the
    first materialization loads every device's newest statistics, however old).

    `start` None means the whole history. Re-running the same interval replaces its file.
    """
    progress = progress or ProgressLine("feature refresh")
    lake = Lake(settings)
    window = timedelta(minutes=settings.feature_window_minutes)
    history = read_events(spark, lake)
    if start is None:
        first = history.agg(F.min("ts")).first()
        earliest = first[0].replace(tzinfo=UTC) if first and first[0] else end
        start = earliest.replace(minute=0, second=0, microsecond=0) - window
    progress.update(f"statistics for {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}", force=True)
    recent = history.where((F.col("ts") >= start - window) & (F.col("ts") < end))
    stats = window_stats(recent, settings.feature_window_minutes, settings.feature_step_minutes).where(
        (F.col("window_end") > start) & (F.col("window_end") <= end)
    )
    table = stats.toArrow()
    name = f"stats-{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}.parquet"
    lake.write_file(table, STATS_DATASET, name)
    progress.update(f"{table.num_rows:,} rows written; materializing", force=True)
    store = feature_store(settings)
    apply_definitions(store, settings)
    materialize(store, settings, start, end)
    devices = len(set(table.column("device_id").to_pylist()))
    progress.done(f"{table.num_rows:,} statistics rows for {devices} devices, online up to {end:%Y-%m-%d %H:%M}")
    return RefreshReport(start, end, table.num_rows, devices)
