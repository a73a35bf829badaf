"""The rows XGBoost fits on: the training split, or a bounded sample of it, in this process.

The native booster trains in the driver's Python, so what it fits on must fit there: at most
`WARDEN_XGB_MAX_ROWS` rows, as float32 (4 bytes a feature, about 0.15 GB a million rows, twice
that while Arrow's copy is converted). A larger split keeps every anomaly, up to half the bound,
and fills the rest with normal rows sampled uniformly (Spark's `rand` with the run's seed); the
fractions go to the run's parameters. Class weighting is computed on the sample, so both classes
still weigh the same in total. The threshold is chosen, and the model judged, on the full
validation and test splits, never on a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.formulas import FEATURE_COLUMNS
from models.estimators import LABEL


@dataclass(frozen=True)
class TrainingSample:
    rows: int  # of the training split
    positives: int
    positive_fraction: float
    negative_fraction: float

    @property
    def expected_rows(self) -> int:
        return round(self.positives * self.positive_fraction + (self.rows - self.positives) * self.negative_fraction)

    def as_params(self) -> dict[str, float | int]:
        return {
            "xgb_rows_expected": self.expected_rows,
            "xgb_positive_fraction": round(self.positive_fraction, 6),
            "xgb_negative_fraction": round(self.negative_fraction, 6),
        }

    def __str__(self) -> str:
        if self.positive_fraction == self.negative_fraction == 1.0:
            return f"fitting on all {self.rows:,} rows"
        return (
            f"fitting on a sample of ~{self.expected_rows:,} of {self.rows:,} rows "
            f"({self.positive_fraction:.1%} of anomalies, {self.negative_fraction:.1%} of normal rows)"
        )

    def matrix(self, train: DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The sampled rows' FEATURE_COLUMNS (float32, NaN for missing) and labels."""
        chosen = train
        if self.positive_fraction < 1.0 or self.negative_fraction < 1.0:
            kept = F.when(F.col(LABEL) == 1, F.lit(self.positive_fraction)).otherwise(F.lit(self.negative_fraction))
            chosen = train.where(F.rand(seed) < kept)
        table = chosen.select(*(F.col(c).cast("float") for c in FEATURE_COLUMNS), F.col(LABEL).cast("byte")).toArrow()
        labels = table.column(LABEL).to_numpy()
        features = np.empty((table.num_rows, len(FEATURE_COLUMNS)), dtype=np.float32)
        for index, name in enumerate(FEATURE_COLUMNS):
            features[:, index] = table.column(name).to_numpy()
        return features, labels


def xgboost_sample(counts: tuple[int, int], max_rows: int) -> TrainingSample:
    """The sample XGBoost fits on within `max_rows`, of a training split of (rows, anomalies) `counts`."""
    rows, positives = counts
    if rows <= max_rows:
        return TrainingSample(rows, positives, 1.0, 1.0)
    kept_positives = min(positives, max_rows // 2)
    return TrainingSample(
        rows,
        positives,
        kept_positives / positives if positives else 1.0,
        (max_rows - kept_positives) / max(rows - positives, 1),
    )
