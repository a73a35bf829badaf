"""One feature definition, two engines: Spark (stream, training) and pandas (the benchmark's
baselines) compute the same features for the same events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from features import frames, logic
from features.formulas import (
    BASELINE,
    BASELINE_COLUMNS,
    BASELINE_OF,
    BASELINE_TIME,
    FEATURE_COLUMNS,
    FRESH,
    MISSING,
    NO_PREVIOUS,
    STALE,
    STATS_COLUMNS,
    STATS_TIME,
    TYPE_BASELINE,
)
from features.schema import SENSOR_COLUMNS

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
_NO_BASELINE: dict[str, object] = {c: np.nan for c in BASELINE_COLUMNS} | {BASELINE_TIME: pd.NaT, BASELINE_OF: None}


def _events() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(60):
        device = f"dev-{i % 4:05d}"
        ts = T0 + timedelta(seconds=10 * (i // 4))
        if i == 41:
            ts -= timedelta(seconds=10)  # same time as an earlier reading of its device: event_id decides
        reading = {s: float(rng.normal(50, 5)) for s in SENSOR_COLUMNS}
        if device == "dev-00002" and 20 <= i < 40:
            reading["vibration"] = 7.0  # stuck
        stats: dict[str, object] = {c: float(rng.uniform(0.5, 60)) for c in STATS_COLUMNS}
        stats[STATS_TIME] = T0 - timedelta(minutes=5)
        if device == "dev-00003":
            stats = {c: np.nan for c in STATS_COLUMNS} | {STATS_TIME: pd.NaT}  # the store never saw it
        if device == "dev-00001":
            stats[STATS_TIME] = T0 - timedelta(hours=3)  # stale
        if device == "dev-00002":
            stats[STATS_TIME] = T0 + timedelta(seconds=60)  # after the device's first events: their future
        rows.append({"event_id": f"e-{i:03d}", "device_id": device, "ts": ts, **reading, **stats, **_NO_BASELINE})
    # Devices whose long-term baseline stands in, or not: with a stale recent window, with none,
    # with none and only a baseline of days that ended after the events, and a device without
    # history of its own, which its type's baseline stands in for.
    recent = {
        "dev-00004": T0 - timedelta(hours=30),
        "dev-00005": pd.NaT,
        "dev-00006": pd.NaT,
        "dev-00007": pd.NaT,
    }
    baseline_end = {
        "dev-00004": T0 - timedelta(hours=12),
        "dev-00005": T0 - timedelta(days=3),
        "dev-00006": T0 + timedelta(hours=1),
        "dev-00007": T0 - timedelta(hours=12),
    }
    for n, device in enumerate(recent):
        for k in range(5):
            reading = {s: float(rng.normal(50, 5)) for s in SENSOR_COLUMNS}
            stats = {c: float(rng.uniform(0.5, 60)) if recent[device] is not pd.NaT else np.nan for c in STATS_COLUMNS}
            baseline = {c: float(rng.uniform(0.5, 60)) for c in BASELINE_COLUMNS}
            rows.append(
                {
                    "event_id": f"e-b{n}{k}",
                    "device_id": device,
                    "ts": T0 + timedelta(seconds=10 * k),
                    **reading,
                    **stats,
                    STATS_TIME: recent[device],
                    **baseline,
                    BASELINE_TIME: baseline_end[device],
                    BASELINE_OF: "device_type" if device == "dev-00007" else "device",
                }
            )
    earlier = pd.DataFrame(
        [
            {
                "device_id": "dev-00000",
                "ts": T0 - timedelta(seconds=10),
                "event_id": "e-old",
                **{s: 49.0 for s in SENSOR_COLUMNS},
            },
            {  # came before some of the events and after others (they arrived late)
                "device_id": "dev-00001",
                "ts": T0 + timedelta(seconds=35),
                "event_id": "e-mid",
                **{s: 30.0 for s in SENSOR_COLUMNS},
            },
        ]
    )
    return pd.DataFrame(rows), earlier


def test_spark_and_pandas_compute_the_same_features(spark) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
    events, earlier = _events()
    expected = frames.add_features(frames.usable_stats(events, 30), earlier).set_index("event_id")

    spark_events = spark.createDataFrame(events.astype(object).where(events.notna(), None))
    spark_earlier = spark.createDataFrame(earlier)
    got = (
        logic.add_features(logic.join_earlier(logic.usable_stats(spark_events, 30), spark_earlier), with_earlier=True)
        .select("event_id", "feature_status", *FEATURE_COLUMNS)
        .toPandas()
        .set_index("event_id")
        .loc[expected.index]
    )
    assert (got["feature_status"] == expected["feature_status"]).all()
    for column in FEATURE_COLUMNS:
        np.testing.assert_allclose(
            got[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-12, err_msg=column
        )

    by_device = expected.groupby("device_id")["feature_status"].unique()
    assert list(by_device["dev-00001"]) == [STALE] and list(by_device["dev-00003"]) == [MISSING]
    # A stale or missing recent window falls back on the device's baseline, never on one from
    # the event's future; the readings are then compared with the baseline, not with nothing.
    assert list(by_device["dev-00004"]) == [BASELINE] and list(by_device["dev-00005"]) == [BASELINE]
    assert list(by_device["dev-00006"]) == [MISSING] and list(by_device["dev-00007"]) == [TYPE_BASELINE]
    on_baseline = events.set_index("event_id").loc[
        expected.index[expected["feature_status"].isin([BASELINE, TYPE_BASELINE])]
    ]
    z = (on_baseline["temperature"] - on_baseline["baseline_mean_temperature"]) / np.maximum(
        on_baseline["baseline_std_temperature"], np.abs(on_baseline["baseline_mean_temperature"]) * 0.001 + 1e-3
    )
    np.testing.assert_allclose(expected.loc[on_baseline.index, "z_temperature"], z, rtol=1e-12)
    # An event never uses statistics of a window that ended after it: they are not there for it.
    future = expected[expected["device_id"] == "dev-00002"]
    before = future["ts"] < T0 + timedelta(seconds=60)
    assert before.any() and (~before).any()
    assert (future.loc[before, "feature_status"] == MISSING).all()
    assert (future.loc[~before, "feature_status"] == FRESH).all()
    assert (future.loc[before, "z_temperature"] == 0).all()
    # Only devices without an earlier reading start at NO_PREVIOUS; a stuck sensor does not move.
    firsts = expected.sort_values(["ts"]).groupby("device_id").head(1)
    assert (firsts.set_index("device_id")["delta_temperature"].drop("dev-00000") == NO_PREVIOUS).all()
    assert firsts.set_index("device_id").loc["dev-00000", "delta_temperature"] >= 0
    assert (expected.loc[[f"e-{i:03d}" for i in range(26, 40, 4)], "delta_vibration"] == 0).all()


@pytest.mark.parametrize("missing", [np.nan, None])
def test_pandas_statistics_of_unknown_devices_are_missing(missing: object) -> None:
    events, _ = _events()
    events.loc[events["device_id"] == "dev-00000", STATS_COLUMNS] = missing
    status = frames.usable_stats(events, 30)["feature_status"]
    assert (status[events["device_id"] == "dev-00000"] == MISSING).all()
