"""The unsupervised floor: each device against its own normal history."""

from __future__ import annotations

import numpy as np
import pytest

from features.schema import SENSOR_COLUMNS
from pipelines.unsupervised_floor import zscore_floor


def _rows(device: str, level: float, count: int, label: int, kind: str | None, rng: np.random.Generator) -> list:
    return [
        # Uniform noise: within 1.8 standard deviations of the mean, so no normal reading is flagged.
        (device, *(float(level + rng.uniform(-1, 1)) for _ in SENSOR_COLUMNS), label, kind, split)
        for split in ("train", "test")
        for _ in range(count)
    ]


@pytest.mark.integration
def test_each_device_is_judged_against_its_own_normal_readings(spark) -> None:  # noqa: ANN001
    rng = np.random.default_rng(1)
    columns = ["device_id", *SENSOR_COLUMNS, "label", "anomaly_type", "split"]
    # Two devices in different regimes: 30 is far out for the first and normal nowhere pooled.
    rows = _rows("dev-a", 20.0, 200, 0, None, rng) + _rows("dev-b", 40.0, 200, 0, None, rng)
    rows += [("dev-a", *([30.0] * len(SENSOR_COLUMNS)), 1, "spike", "test")] * 10
    rows += [("dev-b", *([30.0] * len(SENSOR_COLUMNS)), 1, "drift", "test")] * 10
    # A device with no training history has no baseline: never flagged, whatever it reads.
    rows += [("dev-new", *([500.0] * len(SENSOR_COLUMNS)), 0, None, "test")] * 5
    data = spark.createDataFrame(rows, columns)
    floor = zscore_floor(data.where("split = 'train'"), data.where("split = 'test'"))
    assert floor.positives == 20 and floor.rows == 425
    assert floor.recall == 1.0 and floor.precision == 1.0 and floor.pr_auc == pytest.approx(1.0)
    assert floor.recall_by_kind == {"drift": 1.0, "spike": 1.0}
