"""The feature definitions of `features.formulas` on pandas frames, for processes that score
without Spark (the benchmark's hand-written consumer and Quix Streams baselines). NaN is "no
value", as null is in Spark; `tests/features/test_frames.py` holds both engines to the same
results.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

import numpy as np
import pandas as pd

from features import formulas
from features.formulas import BASELINE_COLUMNS, BASELINE_TIME, STATS_COLUMNS, STATS_TIME
from features.schema import SENSOR_COLUMNS


class _NumpyOps:
    """The operations `features.formulas` needs, on float arrays (NaN is "no value")."""

    abs = staticmethod(np.abs)

    @staticmethod
    def greatest(*values: Any) -> Any:
        return reduce(np.fmax, values)  # fmax skips NaN, as Spark's greatest skips null

    @staticmethod
    def least(*values: Any) -> Any:
        return reduce(np.fmin, values)

    @staticmethod
    def coalesce(value: Any, fallback: Any) -> Any:
        return np.where(np.isnan(value), fallback, value)

    @staticmethod
    def is_missing(value: Any) -> Any:
        return np.isnan(value)

    @staticmethod
    def unless(condition: Any, value: Any) -> Any:
        return np.where(condition, np.nan, value)

    @staticmethod
    def pick(cases: list[tuple[Any, Any]]) -> Any:
        return np.select([condition for condition, _ in cases], [value for _, value in cases], np.nan)

    @staticmethod
    def choose(cases: list[tuple[Any, str]], default: str) -> Any:
        return np.select([condition for condition, _ in cases], [label for _, label in cases], default)


def usable_stats(events: pd.DataFrame, max_age_minutes: int) -> pd.DataFrame:
    """As `features.logic.usable_stats`: `feature_status`, and in STATS_COLUMNS the statistics
    each event is compared with (NaN for none)."""
    ts = pd.to_datetime(events["ts"], utc=True)
    stats_time = pd.to_datetime(events[STATS_TIME], utc=True)
    first_baseline_mean = events[formulas.FIRST_BASELINE_MEAN].to_numpy(np.float64, na_value=np.nan)
    baseline_age_seconds = (ts - pd.to_datetime(events[BASELINE_TIME], utc=True)).dt.total_seconds().to_numpy()
    status = formulas.feature_status(
        stats_time.isna().to_numpy(),
        events[formulas.FIRST_MEAN].to_numpy(np.float64, na_value=np.nan),
        (ts - stats_time).dt.total_seconds().to_numpy(),
        max_age_minutes,
        first_baseline_mean,
        baseline_age_seconds,
        events[formulas.BASELINE_OF].to_numpy(object) == formulas.OF_TYPE,
        _NumpyOps,
    )
    chosen = formulas.stats_in_use(
        status,
        formulas.baseline_unusable(first_baseline_mean, baseline_age_seconds, _NumpyOps),
        {c: events[c].to_numpy(np.float64, na_value=np.nan) for c in STATS_COLUMNS},
        {c: events[c].to_numpy(np.float64, na_value=np.nan) for c in BASELINE_COLUMNS},
        _NumpyOps,
    )
    return events.assign(feature_status=status, **chosen)


def add_features(events: pd.DataFrame, earlier: pd.DataFrame | None = None) -> pd.DataFrame:
    """As `features.logic.add_features`: a device's readings in (ts, event_id) order, the first
    one compared with the device's reading in `earlier` (device_id, ts, event_id, sensors)."""
    frame = events.assign(_earlier=False)
    if earlier is not None and len(earlier):
        context = earlier[["device_id", "ts", "event_id", *SENSOR_COLUMNS]].assign(_earlier=True)
        frame = pd.concat([frame, context], ignore_index=True)
    frame = frame.sort_values(["device_id", "ts", "event_id"], kind="stable")
    previous = frame.groupby("device_id", sort=False)[list(SENSOR_COLUMNS)].shift(1)
    inputs = formulas.model_inputs(
        {s: frame[s].to_numpy(np.float64) for s in SENSOR_COLUMNS},
        {s: previous[s].to_numpy(np.float64, na_value=np.nan) for s in SENSOR_COLUMNS},
        {c: frame[c].to_numpy(np.float64, na_value=np.nan) for c in STATS_COLUMNS},
        {c: frame[c].to_numpy(np.float64, na_value=np.nan) for c in BASELINE_COLUMNS},
        _NumpyOps,
    )
    frame = frame.assign(**inputs)
    return frame[~frame["_earlier"]].drop(columns="_earlier").sort_index().reset_index(drop=True)
