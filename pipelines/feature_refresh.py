"""Feature refresh: rolling device statistics and daily baselines from the lake → Feast offline
source → online store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.logic import baseline_stats, window_stats
from features.store import apply_definitions, feature_store, materialize
from infra.lake import Lake
from infra.progress import ProgressLine
from infra.settings import Settings
from pipelines.history import read_events

STATS_DATASET = "feast/device_stats"
BASELINE_DATASET = "feast/device_baseline"


@dataclass(frozen=True)
class RefreshReport:
    start: datetime
    end: datetime
    rows: int
    devices: int
    baseline_rows: int


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
    interval = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
    lake.write_file(table, STATS_DATASET, f"stats-{interval}.parquet")
    # Baselines end at midnight (UTC): only a refresh that crosses one has any to compute. The
    # source gets a file either way, so that Feast finds one before the first midnight.
    days = settings.feature_baseline_days
    last_midnight = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = start - timedelta(days=days) if last_midnight > start else end
    baselines = baseline_stats(history.where((F.col("ts") >= since) & (F.col("ts") < last_midnight)), days)
    baseline_table = baselines.where((F.col("window_end") > start) & (F.col("window_end") <= end)).toArrow()
    lake.write_file(baseline_table, BASELINE_DATASET, f"baseline-{interval}.parquet")
    progress.update(
        f"{table.num_rows:,} statistics and {baseline_table.num_rows:,} baseline rows written; materializing",
        force=True,
    )
    store = feature_store(settings)
    apply_definitions(store, settings)
    materialize(store, settings, start, end)
    devices = len(set(table.column("device_id").to_pylist()))
    progress.done(
        f"{table.num_rows:,} statistics rows for {devices} devices, {baseline_table.num_rows:,} daily baselines, "
        f"online up to {end:%Y-%m-%d %H:%M}"
    )
    return RefreshReport(start, end, table.num_rows, devices, baseline_table.num_rows)
