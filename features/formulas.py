"""The model's inputs, written once over an engine's operations (`ops`): Spark columns in
`features.logic`, NumPy arrays in `features.frames`. Whatever computes features calls these;
no other copy of a formula exists.

`ops` provides `abs`, `greatest` and `least` (both skip missing values), `coalesce(value,
fallback)`, `is_missing(value)` and `choose([(condition, label), ...], default)`; arithmetic
uses the engine's own operators, and a missing value propagates through it.
"""

from __future__ import annotations

from typing import Any

from features.schema import SENSOR_COLUMNS

STATS_COLUMNS: tuple[str, ...] = tuple(f"{stat}_{sensor}" for sensor in SENSOR_COLUMNS for stat in ("mean", "std"))
STATS_TIME = "stats_window_end"
FIRST_MEAN = f"mean_{SENSOR_COLUMNS[0]}"
Z_COLUMNS: tuple[str, ...] = tuple(f"z_{sensor}" for sensor in SENSOR_COLUMNS)
DELTA_COLUMNS: tuple[str, ...] = tuple(f"delta_{sensor}" for sensor in SENSOR_COLUMNS)
FEATURE_COLUMNS: tuple[str, ...] = (*SENSOR_COLUMNS, *Z_COLUMNS, *DELTA_COLUMNS, "max_abs_z", "min_delta")

# Statistics state: what the stream counts and what each scored row records.
FRESH, STALE, MISSING = "fresh", "stale", "missing"
# "No previous reading of this device": a value no real delta takes (deltas are >= 0).
NO_PREVIOUS = -1.0


def feature_status(no_stats_time: Any, first_mean: Any, age_seconds: Any, max_age_minutes: int, ops: Any) -> Any:
    """missing (the store has no statistics for the device: it returns null or NaN depending
    on the path; or only a window that ended after the event, which training never lets an event
    see: a replayed or late event meets the store's newest statistics), stale (older than
    `max_age` at the event's time) or fresh."""
    unusable = no_stats_time | ops.is_missing(first_mean) | (age_seconds < 0)
    return ops.choose([(unusable, MISSING), (age_seconds > max_age_minutes * 60, STALE)], FRESH)


def _scale(reading: Any, mean: Any, std: Any, ops: Any) -> Any:
    # A window in which a sensor barely moved (or was stuck) must not turn tiny noise into huge z.
    floor = ops.abs(ops.coalesce(mean, reading)) * 0.001 + 1e-3
    return ops.greatest(ops.coalesce(std, floor), floor)


def model_inputs(readings: dict[str, Any], previous: dict[str, Any], stats: dict[str, Any], ops: Any) -> dict[str, Any]:
    """The feature columns beyond the raw readings, by name, in FEATURE_COLUMNS order.

    z: distance from the device's recent mean, in its recent standard deviations (0 without
    usable statistics); delta: how far the reading moved since the device's previous one, in
    the same scale (NO_PREVIOUS without a previous reading)."""
    inputs: dict[str, Any] = {}
    for sensor in SENSOR_COLUMNS:
        reading, mean, std = readings[sensor], stats[f"mean_{sensor}"], stats[f"std_{sensor}"]
        scale = _scale(reading, mean, std, ops)
        inputs[f"z_{sensor}"] = ops.coalesce((reading - mean) / scale, 0.0)
        inputs[f"delta_{sensor}"] = ops.coalesce(ops.abs(reading - previous[sensor]) / scale, NO_PREVIOUS)
    inputs["max_abs_z"] = ops.greatest(*(ops.abs(inputs[c]) for c in Z_COLUMNS))
    inputs["min_delta"] = ops.least(*(inputs[c] for c in DELTA_COLUMNS))
    ordered = (*Z_COLUMNS, *DELTA_COLUMNS, "max_abs_z", "min_delta")
    return {name: inputs[name] for name in ordered}
