"""The two model kinds and how each is fitted.

- `random_forest`: Spark MLlib's RandomForestClassifier (the paper's model); it is fitted and
  scored in the JVM, as part of the Spark plan.
- `xgboost`: the native XGBoost API on the driver, on the training split or a bounded sample of
  it (`pipelines.training_sample`): the native booster trains several times faster than
  `xgboost.spark`, which needs one barrier task per worker; scoring, in training and in the
  stream, runs the same booster in Spark's JVM through xgboost4j.

Both handle class imbalance by weighting the rare positive class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import xgboost as xgb
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

RANDOM_FOREST = "random_forest"
XGBOOST = "xgboost"
MODEL_KINDS = (RANDOM_FOREST, XGBOOST)
LABEL = "label"
WEIGHT = "weight"


def positive_weight(rows: int, positives: int) -> float:
    """Weight of a positive row so that both classes weigh the same in total."""
    return (rows - positives) / positives if positives else 1.0


def fit_random_forest(
    train: DataFrame, features: list[str], pos_weight: float, seed: int, num_trees: int, max_depth: int
) -> PipelineModel:
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    weighted = train.withColumn(WEIGHT, F.when(F.col(LABEL) == 1, F.lit(pos_weight)).otherwise(F.lit(1.0)))
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=features, outputCol="features", handleInvalid="keep"),
            RandomForestClassifier(
                labelCol=LABEL,
                weightCol=WEIGHT,
                featuresCol="features",
                numTrees=num_trees,
                maxDepth=max_depth,
                minInstancesPerNode=2,
                subsamplingRate=0.8,
                seed=seed,
            ),
        ]
    )
    return pipeline.fit(weighted)


def fit_xgboost(
    rows: np.ndarray,
    labels: np.ndarray,
    features: list[str],
    pos_weight: float,
    seed: int,
    num_rounds: int,
    max_depth: int,
) -> xgb.Booster:
    import xgboost as xgb

    # QuantileDMatrix: the histogram's bins straight from the rows, no second full copy of them.
    matrix = xgb.QuantileDMatrix(rows, label=labels, feature_names=features)
    params = {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "max_depth": max_depth,
        "eta": 0.15,
        "subsample": 0.8,
        "colsample_bytree": 0.9,
        "scale_pos_weight": pos_weight,
        "tree_method": "hist",
        "nthread": 2,
        "seed": seed,
    }
    return xgb.train(params, matrix, num_boost_round=num_rounds)
