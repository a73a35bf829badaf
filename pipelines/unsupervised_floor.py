"""The unsupervised floor every candidate is logged beside: each device against its own normal
history, no model.

Per device, the mean and standard deviation of each sensor over the training split's normal
rows; a test event scores the largest |z| of its sensors and is flagged from 3 on. What a
candidate does not beat in F1 and PR-AUC, this per-device z-score already catches: on real
fleets it has beaten a model trained on pooled raw readings (issue 21).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.schema import SENSOR_COLUMNS
from models.estimators import LABEL
from models.evaluation import Quality, evaluate
from models.scoring import SCORE, judged_columns

Z_LIMIT = 3.0
# Its metrics on a candidate's run: floor_test_f1, floor_test_pr_auc, ...
METRIC_PREFIX = "floor_test_"


def zscore_floor(train: DataFrame, test: DataFrame) -> Quality:
    """The per-device z-score detector, fitted on `train`'s normal rows, judged on `test`."""
    aggregates = []
    for sensor in SENSOR_COLUMNS:
        aggregates += [F.avg(sensor).alias(f"_mean_{sensor}"), F.stddev_samp(sensor).alias(f"_std_{sensor}")]
    baseline = train.where(F.col(LABEL) == 0).groupBy("device_id").agg(*aggregates)
    # A sensor that never moved in normal operation: any change is far out, not a division by zero.
    z = [F.abs(F.col(s) - F.col(f"_mean_{s}")) / F.greatest(F.col(f"_std_{s}"), F.lit(1e-6)) for s in SENSOR_COLUMNS]
    frame = judged_columns(test.join(baseline, "device_id", "left").withColumn(SCORE, F.greatest(*z)))
    # A device without normal training history has no baseline: it scores 0 and is never flagged.
    scores = frame[SCORE].fillna(0.0).to_numpy(float)
    return evaluate(frame[LABEL].to_numpy(), scores, Z_LIMIT, frame["anomaly_type"].to_numpy())
