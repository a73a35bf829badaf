"""The model's inputs, written once over an engine's operations (`ops`): Spark columns in
`features.logic`, NumPy arrays in `features.frames`. Whatever computes features calls these;
no other copy of a formula exists.

`ops` provides `abs`, `greatest` and `least` (both skip missing values), `coalesce(value,
fallback)`, `is_missing(value)`, `choose([(condition, label), ...], default)` and
`pick([(condition, value), ...])` (the first value whose condition holds, else missing) and
`unless(condition, value)` (missing where the condition holds);
arithmetic uses the engine's own operators, and a missing value propagates through it.
"""

from __future__ import annotations

from typing import Any

from features.schema import SENSOR_COLUMNS

STATS_COLUMNS: tuple[str, ...] = tuple(f"{stat}_{sensor}" for sensor in SENSOR_COLUMNS for stat in ("mean", "std"))
STATS_TIME = "stats_window_end"
FIRST_MEAN = f"mean_{SENSOR_COLUMNS[0]}"
# The device's long-term normal: the same statistics over days, robust to faults that last minutes.
BASELINE_COLUMNS: tuple[str, ...] = tuple(f"baseline_{column}" for column in STATS_COLUMNS)
BASELINE_TIME = "baseline_window_end"
FIRST_BASELINE_MEAN = BASELINE_COLUMNS[0]
# Whose baseline a device's row holds: its own, or its device type's (a device without history yet).
BASELINE_OF, OWN, OF_TYPE = "baseline_of", "device", "device_type"
Z_COLUMNS: tuple[str, ...] = tuple(f"z_{sensor}" for sensor in SENSOR_COLUMNS)
BASELINE_Z_COLUMNS: tuple[str, ...] = tuple(f"zb_{sensor}" for sensor in SENSOR_COLUMNS)
DELTA_COLUMNS: tuple[str, ...] = tuple(f"delta_{sensor}" for sensor in SENSOR_COLUMNS)
# The recent window against the baseline: a fault that outlasts part of the window moves the
# window's mean and widens its spread, and with them shrinks the reading's own z.
WINDOW_SHIFT_COLUMNS: tuple[str, ...] = tuple(f"shift_{sensor}" for sensor in SENSOR_COLUMNS)
WINDOW_SPREAD_COLUMNS: tuple[str, ...] = tuple(f"spread_{sensor}" for sensor in SENSOR_COLUMNS)
_DERIVED_COLUMNS: tuple[str, ...] = (
    *Z_COLUMNS,
    *BASELINE_Z_COLUMNS,
    *DELTA_COLUMNS,
    *WINDOW_SHIFT_COLUMNS,
    *WINDOW_SPREAD_COLUMNS,
    "max_abs_z",
    "max_abs_zb",
    "min_delta",
    "max_abs_shift",
    "max_spread",
    "min_spread",
)
# The model's inputs: every reading against the device itself. Raw readings are not among them:
# devices run in regimes of their own, and a model that learns the regimes it trained on misses
# a device in another (issue 21; bench/README.md has the measurements with and without them).
FEATURE_COLUMNS: tuple[str, ...] = _DERIVED_COLUMNS
# What a scored row and an alert show of an event: its readings, then the model's inputs.
REPORTED_COLUMNS: tuple[str, ...] = (*SENSOR_COLUMNS, *FEATURE_COLUMNS)

# Statistics state: what the stream counts and what each scored row records.
FRESH, BASELINE, TYPE_BASELINE, STALE, MISSING = "fresh", "baseline", "type_baseline", "stale", "missing"
STATUSES = (FRESH, BASELINE, TYPE_BASELINE, STALE, MISSING)
# "No previous reading of this device": a value no real delta takes (deltas are >= 0).
NO_PREVIOUS = -1.0


def feature_status(
    no_stats_time: Any,
    first_mean: Any,
    age_seconds: Any,
    max_age_minutes: int,
    first_baseline_mean: Any,
    baseline_age_seconds: Any,
    baseline_of_type: Any,
    ops: Any,
) -> Any:
    """Which statistics an event is compared with.

    fresh: the device's recent window, at most `max_age` old at the event's time. baseline: the
    recent window is stale or missing, and the device's long-term baseline stands in for it;
    type_baseline: the same with its device type's baseline, for a device without history of its
    own. stale: the recent window is too old and there is no baseline; missing: nothing at all.
    Statistics whose window ended after the event are never used (training's point-in-time join
    never lets an event see them; a replayed or late event meets the store's newest ones), and
    the store returns null or NaN for what it does not have, depending on the path."""
    no_recent = no_stats_time | ops.is_missing(first_mean) | (age_seconds < 0)
    no_baseline = baseline_unusable(first_baseline_mean, baseline_age_seconds, ops)
    too_old = age_seconds > max_age_minutes * 60
    return ops.choose(
        [
            (no_recent & no_baseline, MISSING),
            (no_recent & baseline_of_type, TYPE_BASELINE),
            (no_recent, BASELINE),
            (too_old & no_baseline, STALE),
            (too_old & baseline_of_type, TYPE_BASELINE),
            (too_old, BASELINE),
        ],
        FRESH,
    )


def baseline_unusable(first_baseline_mean: Any, baseline_age_seconds: Any, ops: Any) -> Any:
    """No baseline, or only one whose days ended after the event."""
    return ops.is_missing(first_baseline_mean) | ops.is_missing(baseline_age_seconds) | (baseline_age_seconds < 0)


def stats_in_use(
    status: Any, no_baseline: Any, recent: dict[str, Any], baseline: dict[str, Any], ops: Any
) -> dict[str, Any]:
    """The statistics the features compare readings with: in STATS_COLUMNS, by `feature_status`,
    the recent window's when fresh, the baseline's in its place, none otherwise; in
    BASELINE_COLUMNS, the baseline unless it is unusable (`baseline_unusable`)."""
    on_baseline = (status == BASELINE) | (status == TYPE_BASELINE)
    chosen = {
        column: ops.pick([(status == FRESH, recent[column]), (on_baseline, baseline[f"baseline_{column}"])])
        for column in STATS_COLUMNS
    }
    return chosen | {column: ops.unless(no_baseline, baseline[column]) for column in BASELINE_COLUMNS}


def _scale(reading: Any, mean: Any, std: Any, ops: Any) -> Any:
    # A window in which a sensor barely moved (or was stuck) must not turn tiny noise into huge z.
    floor = ops.abs(ops.coalesce(mean, reading)) * 0.001 + 1e-3
    return ops.greatest(ops.coalesce(std, floor), floor)


def model_inputs(
    readings: dict[str, Any], previous: dict[str, Any], stats: dict[str, Any], baseline: dict[str, Any], ops: Any
) -> dict[str, Any]:
    """The model's inputs (FEATURE_COLUMNS), by name, in that order.

    z: distance from the device's recent mean, in its recent standard deviations (0 without
    usable statistics); zb: the same from the device's long-term baseline (0 without one), which
    a fault that lasts longer than the recent window does not move; delta: how far the reading
    moved since the device's previous one, in the recent scale (NO_PREVIOUS without a previous
    reading); shift and spread: the recent window's mean and standard deviation against the
    baseline (0 and 1 without both)."""
    inputs: dict[str, Any] = {}
    for sensor in SENSOR_COLUMNS:
        reading, mean, std = readings[sensor], stats[f"mean_{sensor}"], stats[f"std_{sensor}"]
        scale = _scale(reading, mean, std, ops)
        inputs[f"z_{sensor}"] = ops.coalesce((reading - mean) / scale, 0.0)
        inputs[f"delta_{sensor}"] = ops.coalesce(ops.abs(reading - previous[sensor]) / scale, NO_PREVIOUS)
        base_mean, base_std = baseline[f"baseline_mean_{sensor}"], baseline[f"baseline_std_{sensor}"]
        base_scale = _scale(reading, base_mean, base_std, ops)
        inputs[f"zb_{sensor}"] = ops.coalesce((reading - base_mean) / base_scale, 0.0)
        inputs[f"shift_{sensor}"] = ops.coalesce((mean - base_mean) / base_scale, 0.0)
        inputs[f"spread_{sensor}"] = ops.coalesce(std / base_scale, 1.0)
    inputs["max_abs_z"] = ops.greatest(*(ops.abs(inputs[c]) for c in Z_COLUMNS))
    inputs["max_abs_zb"] = ops.greatest(*(ops.abs(inputs[c]) for c in BASELINE_Z_COLUMNS))
    inputs["min_delta"] = ops.least(*(inputs[c] for c in DELTA_COLUMNS))
    inputs["max_abs_shift"] = ops.greatest(*(ops.abs(inputs[c]) for c in WINDOW_SHIFT_COLUMNS))
    inputs["max_spread"] = ops.greatest(*(inputs[c] for c in WINDOW_SPREAD_COLUMNS))
    inputs["min_spread"] = ops.least(*(inputs[c] for c in WINDOW_SPREAD_COLUMNS))
    return {name: inputs[name] for name in _DERIVED_COLUMNS}
