"""Feature refresh: rolling device statistics and daily baselines from the lake → Feast offline
source → online store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.formulas import BASELINE_COLUMNS, BASELINE_OF, BASELINE_TIME, OF_TYPE, OWN
from features.logic import baseline_stats, window_stats
from features.store import apply_definitions, materialize
from infra.context import Context
from infra.exceptions import LakeError
from infra.lake import Lake
from infra.progress import ProgressLine
from pipelines.history import read_events, read_parquet

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
    ctx: Context,
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
    settings, spark, lake = ctx.settings, ctx.spark, ctx.lake
    window = timedelta(minutes=settings.feature.window_minutes)
    history = read_events(spark, lake)
    if start is None:
        first = history.agg(F.min("ts")).first()
        earliest = first[0].replace(tzinfo=UTC) if first and first[0] else end
        start = earliest.replace(minute=0, second=0, microsecond=0) - window
    progress.update(f"statistics for {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}", force=True)
    recent = history.where((F.col("ts") >= start - window) & (F.col("ts") < end))
    stats = window_stats(recent, settings.feature.window_minutes, settings.feature.step_minutes).where(
        (F.col("window_end") > start) & (F.col("window_end") <= end)
    )
    table = stats.toArrow()
    interval = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
    lake.write_file(table, STATS_DATASET, f"stats-{interval}.parquet")
    # The source gets a file even without a midnight in the interval, so that Feast finds one.
    baseline_table = daily_baselines(spark, lake, history, settings.feature.baseline_days, start, end).toArrow()
    lake.write_file(baseline_table, BASELINE_DATASET, f"baseline-{interval}.parquet")
    progress.update(
        f"{table.num_rows:,} statistics and {baseline_table.num_rows:,} baseline rows written; materializing",
        force=True,
    )
    apply_definitions(ctx.feature_store, settings, lake)
    materialize(ctx.feature_store, settings, start, end)
    devices = len(set(table.column("device_id").to_pylist()))
    progress.done(
        f"{table.num_rows:,} statistics rows for {devices} devices, {baseline_table.num_rows:,} daily baselines, "
        f"online up to {end:%Y-%m-%d %H:%M}"
    )
    return RefreshReport(start, end, table.num_rows, devices, baseline_table.num_rows)


def daily_baselines(
    spark: SparkSession, lake: Lake, history: DataFrame, days: int, start: datetime, end: datetime
) -> DataFrame:
    """The baselines of each midnight (UTC) in (start, end]: each device's own, over its readings
    of the `days` days before; and for a registered device without any reading before that
    midnight, its type's, over the readings of its type's devices in those days. A device quiet
    for longer than `days` gets no row: the online store keeps its last one.

    Only a refresh that crosses a midnight has any to compute; the others read nothing."""
    last_midnight = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    crosses_midnight = last_midnight > start
    since = start - timedelta(days=days) if crosses_midnight else end
    recent = history.where((F.col("ts") >= since) & (F.col("ts") < last_midnight))
    in_interval = (F.col("window_end") > start) & (F.col("window_end") <= end)
    columns = ["device_id", "window_end", BASELINE_TIME, *BASELINE_COLUMNS, BASELINE_OF]
    own = baseline_stats(recent, days).where(in_interval).withColumn(BASELINE_OF, F.lit(OWN)).select(*columns)
    if not crosses_midnight:
        return own
    try:
        registered = read_parquet(spark, lake.url("devices"), "no device registry")
    except LakeError:  # no types to fall back on
        return own
    # A device registered more than once: its first registration, its latest type.
    fleet = registered.groupBy("device_id").agg(
        F.min("registered_at").alias("registered_at"), F.max_by("device_type", "registered_at").alias("device_type")
    )
    of_type = baseline_stats(recent.join(fleet, "device_id"), days, "device_type").where(in_interval)
    first_seen = history.groupBy("device_id").agg(F.min("ts").alias("_first_seen"))
    newcomers = (
        fleet.join(of_type, "device_type")
        .where(F.col("registered_at") <= F.col("window_end"))
        .join(first_seen, "device_id", "left")
        .where(F.col("_first_seen").isNull() | (F.col("_first_seen") >= F.col("window_end")))
        .withColumn(BASELINE_OF, F.lit(OF_TYPE))
    )
    return own.unionByName(newcomers.select(*columns))
