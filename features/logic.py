"""The feature definitions, shared by training (batch) and scoring (stream): one copy, not two.

Two steps, both DataFrame in / DataFrame out, no reads, writes or sessions inside:

- `window_stats`: per-device rolling statistics of each sensor over the last
  `window` minutes, on a grid of `step` minutes. Batch jobs compute them from the lake; Feast
  serves them (offline for training, online for the stream).
- `add_features`: from an event and its device's statistics, the model's inputs: how far each
  reading is from the device's recent normal (z-scores) and how much it moved since the
  device's previous reading (a stuck sensor does not move at all).

The formulas of the model's inputs (`features.formulas`) are written once over an engine's
operations; this module applies them to Spark columns, `features.frames` to NumPy arrays (for
processes without Spark, such as the benchmark's baselines).
"""

from __future__ import annotations

import functools

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from features import formulas
from features.formulas import BASELINE_COLUMNS, BASELINE_TIME, STATS_COLUMNS, STATS_TIME
from features.schema import SENSOR_COLUMNS


class _SparkOps:
    """The operations `features.formulas` needs, on Spark columns (null is "no value")."""

    abs = staticmethod(F.abs)
    greatest = staticmethod(F.greatest)  # skips nulls
    least = staticmethod(F.least)

    @staticmethod
    def coalesce(value: Column, fallback: Column | float) -> Column:
        return F.coalesce(value, fallback if isinstance(fallback, Column) else F.lit(fallback))

    @staticmethod
    def is_missing(value: Column) -> Column:
        return value.isNull() | F.isnan(value)

    @staticmethod
    def unless(condition: Column, value: Column) -> Column:
        return F.when(~condition, value)

    @staticmethod
    def pick(cases: list[tuple[Column, Column]]) -> Column:
        picked = F.when(*cases[0])
        for condition, value in cases[1:]:
            picked = picked.when(condition, value)
        return picked

    @staticmethod
    def choose(cases: list[tuple[Column, str]], default: str) -> Column:
        chosen = F.when(cases[0][0], F.lit(cases[0][1]))
        for condition, value in cases[1:]:
            chosen = chosen.when(condition, F.lit(value))
        return chosen.otherwise(F.lit(default))


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


# The baseline's quartiles: their middle is its mean, their spread its standard deviation (the
# interquartile range of a normal distribution is 1.349 of them). A fault that lasts minutes moves
# neither, where it would move a mean and a standard deviation over the same days.
_QUARTILES = [0.25, 0.5, 0.75]
_IQR_PER_STD = 1.349


def baseline_stats(telemetry: DataFrame, days: int, key: str = "device_id") -> DataFrame:
    """Per `key` (a device, or a device type) and midnight (UTC) `window_end`: each sensor's
    long-term normal over the `days` days before it, as BASELINE_COLUMNS: robust mean (median)
    and standard deviation (interquartile range / 1.349)."""
    window = F.window("ts", f"{days} days", "1 day")
    quartiles = [F.percentile_approx(sensor, _QUARTILES, 1000).alias(f"_q_{sensor}") for sensor in SENSOR_COLUMNS]
    grouped = telemetry.groupBy(key, window.alias("window")).agg(*quartiles)
    robust = []
    for sensor in SENSOR_COLUMNS:
        q = F.col(f"_q_{sensor}")
        robust += [
            q[1].alias(f"baseline_mean_{sensor}"),
            ((q[2] - q[0]) / _IQR_PER_STD).alias(f"baseline_std_{sensor}"),
        ]
    return grouped.select(
        key,
        F.col("window.end").alias("window_end"),
        F.col("window.end").alias(BASELINE_TIME),
        *robust,
    ).select(key, "window_end", BASELINE_TIME, *BASELINE_COLUMNS)


def grid_floor(ts: Column, step_minutes: int) -> Column:
    """The grid point at or before `ts`: the latest statistics an event at `ts` may use."""
    step = step_minutes * 60
    return F.timestamp_seconds(F.floor(F.unix_timestamp(ts) / step) * step)


# The columns below are expressions over column names, independent of any DataFrame: built once
# per process and reused by every micro-batch (building them through py4j costs a batch ~0.2 s).


@functools.cache
def _status(max_age_minutes: int) -> Column:
    age_seconds = F.unix_timestamp("ts") - F.unix_timestamp(STATS_TIME)
    baseline_age_seconds = F.unix_timestamp("ts") - F.unix_timestamp(BASELINE_TIME)
    status: Column = formulas.feature_status(
        F.col(STATS_TIME).isNull(),
        F.col(formulas.FIRST_MEAN),
        age_seconds,
        max_age_minutes,
        F.col(formulas.FIRST_BASELINE_MEAN),
        baseline_age_seconds,
        F.col(formulas.BASELINE_OF) == F.lit(formulas.OF_TYPE),
        _SparkOps,
    )
    return status.alias("feature_status")


@functools.cache
def _fresh_stats() -> dict[str, Column]:
    baseline_age_seconds = F.unix_timestamp("ts") - F.unix_timestamp(BASELINE_TIME)
    chosen = formulas.stats_in_use(
        F.col("feature_status"),
        formulas.baseline_unusable(F.col(formulas.FIRST_BASELINE_MEAN), baseline_age_seconds, _SparkOps),
        {c: F.col(c) for c in STATS_COLUMNS},
        {c: F.col(c) for c in BASELINE_COLUMNS},
        _SparkOps,
    )
    return {c: value.alias(c) for c, value in chosen.items()}


def usable_stats(events: DataFrame, max_age_minutes: int) -> DataFrame:
    """Put in STATS_COLUMNS the statistics each event is compared with, and say which in
    `feature_status` (`features.formulas.feature_status`: the recent window when fresh, the
    device's baseline in its place, none when stale or missing). Feast does not enforce a
    feature view's TTL on online reads, so the age is checked here, for both paths."""
    events = events.select(_all(), _status(max_age_minutes))
    return events.select(*_usable_columns(tuple(events.columns)))


@functools.cache
def _all() -> Column:
    return F.col("*")


@functools.lru_cache(maxsize=8)
def _usable_columns(columns: tuple[str, ...]) -> tuple[Column, ...]:
    fresh_stats = _fresh_stats()
    return tuple(fresh_stats.get(c, F.col(c)) for c in columns)


def earlier(column: str) -> str:
    """The name under which events carry a column of their device's earlier reading."""
    return f"_earlier_{column}"


EARLIER_FIELDS = ("ts", "event_id", *SENSOR_COLUMNS)


@functools.cache
def _model_inputs(with_earlier: bool) -> tuple[Column, ...]:
    previous = Window.partitionBy("device_id").orderBy("ts", "event_id")
    prior = {sensor: F.lag(sensor).over(previous) for sensor in SENSOR_COLUMNS}
    if with_earlier:
        # An earlier reading is an event's previous one when it comes before the event and after
        # the event's previous one in the batch: the same as ordering both together.
        key = F.struct("ts", "event_id")
        last = F.struct(F.col(earlier("ts")).alias("ts"), F.col(earlier("event_id")).alias("event_id"))
        before = F.lag(key).over(previous)
        use_last = F.col(earlier("ts")).isNotNull() & (last < key) & (before.isNull() | (before < last))
        prior = {sensor: F.when(use_last, F.col(earlier(sensor))).otherwise(prior[sensor]) for sensor in prior}
    inputs = formulas.model_inputs(
        {sensor: F.col(sensor) for sensor in SENSOR_COLUMNS},
        prior,
        {c: F.col(c) for c in STATS_COLUMNS},
        {c: F.col(c) for c in BASELINE_COLUMNS},
        _SparkOps,
    )
    return tuple(column.alias(name) for name, column in inputs.items())


def add_features(events: DataFrame, with_earlier: bool = False) -> DataFrame:
    """Add FEATURE_COLUMNS to events (device_id, ts, event_id, sensors, stats columns).

    A device's readings are ordered by (ts, event_id). With `with_earlier`, the events also carry
    their device's reading from before them (`earlier(field)` for each of EARLIER_FIELDS, null
    when there is none), so that the first event of a device still has its previous reading: the
    stream carries each device's last reading of the earlier batches, training has none (its
    window holds the history).
    """
    return events.select(*_kept_columns(tuple(events.columns), with_earlier), *_model_inputs(with_earlier))


@functools.lru_cache(maxsize=8)
def _kept_columns(columns: tuple[str, ...], with_earlier: bool) -> tuple[Column, ...]:
    return tuple(F.col(c) for c in columns if not with_earlier or c not in _earlier_names())


@functools.cache
def _earlier_names() -> frozenset[str]:
    return frozenset(earlier(field) for field in EARLIER_FIELDS)


def join_earlier(events: DataFrame, readings: DataFrame) -> DataFrame:
    """`events` with their device's reading in `readings` (device_id and EARLIER_FIELDS, one row
    per device) as the columns `add_features(..., with_earlier=True)` reads."""
    columns = [F.col(field).alias(earlier(field)) for field in EARLIER_FIELDS]
    return events.join(F.broadcast(readings.select("device_id", *columns)), "device_id", "left")
