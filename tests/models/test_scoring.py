"""XGBoost scoring in Spark's JVM (xgboost4j) gives the scores Python's xgboost gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from pyspark.sql import SparkSession

from models.scoring import SCORE, xgboost_scorer

FEATURES = [f"f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, len(FEATURES))).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 3] > 0.8).astype(int)
    params = {"objective": "binary:logistic", "max_depth": 5, "seed": 3}
    return xgb.train(params, xgb.DMatrix(x, label=y, feature_names=FEATURES), 60)


def test_jvm_scores_equal_python_scores_with_missing_values(spark: SparkSession, booster: xgb.Booster) -> None:
    rng = np.random.default_rng(4)
    rows = pd.DataFrame(rng.normal(size=(3000, len(FEATURES))), columns=FEATURES)
    rows.iloc[::7, 2] = np.nan  # a feature with no value scores as XGBoost's missing
    rows.iloc[::11, 0] = None
    rows["event_id"] = [f"e-{i}" for i in range(len(rows))]
    frame = spark.createDataFrame(rows).repartition(3)  # several partitions, blocks across them

    scored = xgboost_scorer(spark, booster, FEATURES)(frame).toPandas().set_index("event_id").loc[rows["event_id"]]

    expected = booster.inplace_predict(rows[FEATURES].to_numpy(np.float32))
    assert list(scored.columns) == [*FEATURES, SCORE]
    np.testing.assert_allclose(scored[SCORE].to_numpy(), expected, atol=1e-6)
    assert scored[SCORE].between(0.0, 1.0).all() and scored[SCORE].std() > 0.05


def test_bytes_that_are_no_model_fail_on_the_driver(spark: SparkSession) -> None:
    class NotAModel:
        def save_raw(self, raw_format: str) -> bytes:
            return b"\x00 not a model"

    with pytest.raises(Exception, match="(?i)xgboost|model|parse"):
        xgboost_scorer(spark, NotAModel(), FEATURES)  # type: ignore[arg-type]
