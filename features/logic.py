"""The feature definitions, shared by training (batch) and scoring (stream): one copy, not two.

Two steps, both DataFrame in / DataFrame out, no reads, writes or sessions inside:

- `window_stats`: per-device rolling statistics of each sensor over the last
  `window` minutes, on a grid of `step` minutes. Batch jobs compute them from the lake; Feast
  serves them (offline for training, online for the stream).
- `add_features`: from an event and its device's statistics, the model's inputs: how far each
  reading is from the device's recent normal (z-scores) and how much it moved since the
  device's previous reading (a stuck sensor does not move at all).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from features.schema import SENSOR_COLUMNS

STATS_COLUMNS: tuple[str, ...] = tuple(
    f"{stat}_{sensor}" for sensor in SENSOR_COLUMNS for stat in ("mean", "std")
)
STATS_TIME = "stats_window_end"
Z_COLUMNS: tuple[str, ...] = tuple(f"z_{sensor}" for sensor in SENSOR_COLUMNS)
DELTA_COLUMNS: tuple[str, ...] = tuple(f"delta_{sensor}" for sensor in SENSOR_COLUMNS)
FEATURE_COLUMNS: tuple[str, ...] = (*SENSOR_COLUMNS, *Z_COLUMNS, *DELTA_COLUMNS, "max_abs_z", "min_delta")

# Statistics state: what the stream counts and what each scored row records.
FRESH, STALE, MISSING = "fresh", "stale", "missing"
# "No previous reading of this device": a value no real delta takes (deltas are >= 0).
NO_PREVIOUS = -1.0


def window_stats(telemetry: DataFrame, window_minutes: int, step_minutes: int) -> DataFrame:
    """Per device and grid point `window_end`: count, mean and std of each sensor over
    [window_end - window, window_end). Grid points are multiples of `step` since the epoch."""
    window = F.window("ts", f"{window_minutes} minutes", f"{step_minutes} minutes")
    aggregates = [F.count(F.lit(1)).alias("count")]
    for sensor in SENSOR_COLUMNS:
        aggregates += [F.avg(sensor).alias(f"mean_{sensor}"), F.stddev_samp(sensor).alias(f"std_{sensor}")]
    stats = telemetry.groupBy("device_id", window.alias("window")).agg(*aggregates)
    return stats.select(
        "device_id",
        F.col("window.end").alias("window_end"),
        F.col("window.end").alias(STATS_TIME),
        "count",
        *(F.coalesce(F.col(c), F.lit(0.0)).alias(c) if c.startswith("std_") else F.col(c) for c in STATS_COLUMNS),
    )


def grid_floor(ts: Column, step_minutes: int) -> Column:
    """The grid point at or before `ts`: the latest statistics an event at `ts` may use."""
    step = step_minutes * 60
    return F.timestamp_seconds(F.floor(F.unix_timestamp(ts) / step) * step)


def usable_stats(events: DataFrame, max_age_minutes: int) -> DataFrame:
    """Null the statistics that are missing or older than `max_age` at the event's time, and
    say which in `feature_status` (fresh / stale / missing). Feast does not enforce a feature
    view's TTL on online reads, so the age is checked here, for both paths."""
    age_seconds = F.unix_timestamp("ts") - F.unix_timestamp(STATS_TIME)
    first_mean = F.col(f"mean_{SENSOR_COLUMNS[0]}")
    # A store returns NaN or null for a device it has never seen, depending on the path.
    status = (
        F.when(F.col(STATS_TIME).isNull() | first_mean.isNull() | F.isnan(first_mean), F.lit(MISSING))
        .when(age_seconds > max_age_minutes * 60, F.lit(STALE))
        .otherwise(F.lit(FRESH))
    )
    events = events.withColumn("feature_status", status)
    fresh = F.col("feature_status") == FRESH
    return events.select(
        *(F.when(fresh, F.col(c)).alias(c) if c in STATS_COLUMNS else F.col(c) for c in events.columns)
    )


def _scale(sensor: str) -> Column:
    # A window in which a sensor barely moved (or was stuck) must not turn tiny noise into huge z.
    mean, std = F.col(f"mean_{sensor}"), F.col(f"std_{sensor}")
    floor = F.abs(F.coalesce(mean, F.col(sensor))) * 0.001 + 1e-3
    return F.greatest(F.coalesce(std, floor), floor)


def add_features(events: DataFrame, earlier: DataFrame | None = None) -> DataFrame:
    """Add FEATURE_COLUMNS to events (device_id, ts, event_id, sensors, stats columns).

    A device's readings are ordered by (ts, event_id); `earlier` holds readings that came
    before `events` (device_id, ts, event_id, sensors) so that the first event of a device
    still has its previous reading: the stream passes each device's last reading of the
    earlier batches, training passes nothing (its window holds the history). Missing
    statistics give neutral z-scores (0); a device with no previous reading at all gets
    delta = NO_PREVIOUS.
    """
    previous = Window.partitionBy("device_id").orderBy("ts", "event_id")
    if earlier is not None:
        context = earlier.select("device_id", "ts", "event_id", *SENSOR_COLUMNS, F.lit(True).alias("_earlier"))
        events = events.withColumn("_earlier", F.lit(False)).unionByName(context, allowMissingColumns=True)
    columns = [F.col(c) for c in events.columns]
    for sensor in SENSOR_COLUMNS:
        z = (F.col(sensor) - F.col(f"mean_{sensor}")) / _scale(sensor)
        columns.append(F.coalesce(z, F.lit(0.0)).alias(f"z_{sensor}"))
        delta = F.abs(F.col(sensor) - F.lag(sensor).over(previous)) / _scale(sensor)
        columns.append(F.coalesce(delta, F.lit(NO_PREVIOUS)).alias(f"delta_{sensor}"))
    with_features = events.select(*columns)
    if earlier is not None:
        with_features = with_features.where(~F.col("_earlier")).drop("_earlier")
    return with_features.withColumn(
        "max_abs_z", F.greatest(*(F.abs(F.col(c)) for c in Z_COLUMNS))
    ).withColumn("min_delta", F.least(*(F.col(c) for c in DELTA_COLUMNS)))
