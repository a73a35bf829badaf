"""Score a DataFrame of features with either model kind, adding a `score` column in [0, 1].

The same functions score the test split in training and every micro-batch in the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd  # pandas_udf reads the UDF's type hints from this module's globals

from models.estimators import RANDOM_FOREST, XGBOOST

if TYPE_CHECKING:
    import xgboost as xgb
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

Scorer = Callable[["DataFrame"], "DataFrame"]
SCORE = "score"

# One booster per Python worker and model version: Spark reuses its Python workers.
_BOOSTERS: dict[str, Any] = {}


def random_forest_scorer(model: PipelineModel) -> Scorer:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    def score(frame: DataFrame) -> DataFrame:
        columns = frame.columns
        scored = model.transform(frame)
        return scored.select(*columns, vector_to_array(F.col("probability"))[1].alias(SCORE))

    return score


def xgboost_scorer(booster: xgb.Booster, features: list[str], key: str) -> Scorer:
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.functions import pandas_udf

    raw = bytes(booster.save_raw(raw_format="ubj"))

    @pandas_udf("double")  # type: ignore[call-overload, untyped-decorator]
    def predict(rows: pd.DataFrame) -> pd.Series:
        model = _BOOSTERS.get(key)
        if model is None:
            import xgboost

            model = xgboost.Booster()
            model.load_model(bytearray(raw))
            model.set_param({"nthread": 1})
            _BOOSTERS[key] = model
        matrix = rows.to_numpy(np.float32, na_value=np.nan)
        return pd.Series(model.inplace_predict(matrix), dtype="float64")

    def score(frame: DataFrame) -> DataFrame:
        return frame.withColumn(SCORE, predict(F.struct(*(F.col(c).cast("double") for c in features))))

    return score


def scorer_for(kind: str, model: Any, features: list[str], key: str) -> Scorer:
    if kind == RANDOM_FOREST:
        return random_forest_scorer(model)
    if kind == XGBOOST:
        return xgboost_scorer(model, features, key)
    raise ValueError(f"unknown model kind {kind!r}")
