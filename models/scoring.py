"""Score a DataFrame of features with either model kind, adding a `score` column in [0, 1].

The same functions score the test split in training and every micro-batch in the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from models.estimators import LABEL, RANDOM_FOREST, XGBOOST

if TYPE_CHECKING:
    import pandas as pd
    import xgboost as xgb
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

Scorer = Callable[["DataFrame"], "DataFrame"]
SCORE = "score"


def judged_columns(scored: DataFrame) -> pd.DataFrame:
    """A scored split's labels, scores and anomaly kinds on the driver, to judge them: a byte, a
    float and a reference to one of a few strings a row, whatever the split's size."""
    from pyspark.sql import functions as F

    compact = scored.select(F.col(LABEL).cast("byte"), F.col(SCORE).cast("float"), "anomaly_type")
    return compact.toArrow().to_pandas(deduplicate_objects=True)


def random_forest_scorer(model: PipelineModel) -> Scorer:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    def score(frame: DataFrame) -> DataFrame:
        columns = frame.columns
        scored = model.transform(frame)
        return scored.select(*columns, vector_to_array(F.col("probability"))[1].alias(SCORE))

    return score


def xgboost_scorer(spark: SparkSession, booster: xgb.Booster, features: list[str]) -> Scorer:
    """Scores in Spark's JVM through xgboost4j (`infra/jvm/scoring`): no Python worker per row.
    The model travels as UBJSON, which xgboost4j of the pinned version reads."""
    from pyspark.sql import DataFrame

    jvm = spark.sparkContext._jvm
    names = spark.sparkContext._gateway.new_array(jvm.java.lang.String, len(features))  # type: ignore[union-attr]
    for index, name in enumerate(features):
        names[index] = name
    scorer = jvm.io.streamwarden.scoring.XGBoostScorer(  # type: ignore[union-attr]
        spark._jsparkSession, bytearray(booster.save_raw(raw_format="ubj")), names
    )

    def score(frame: DataFrame) -> DataFrame:
        return DataFrame(scorer.score(frame._jdf, SCORE), spark)

    return score


def scorer_for(spark: SparkSession, kind: str, model: Any, features: list[str]) -> Scorer:
    if kind == RANDOM_FOREST:
        return random_forest_scorer(model)
    if kind == XGBOOST:
        return xgboost_scorer(spark, model, features)
    raise ValueError(f"unknown model kind {kind!r}")
