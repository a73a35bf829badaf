"""What each split of a training set holds, and what makes its test split unfit to judge a model.

A test split judges a model fairly only on what training showed it: anomaly kinds and device
types that only the test split holds measure luck, not the model (issue 21: a fleet whose
experiments ran on different days put one set of faults in training and another in the test).
And a handful of anomalies gives an F1 that one event moves by a tenth.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from models.estimators import LABEL

# An anomaly without a kind, a device without a type: counted under these names.
UNNAMED_KIND, UNNAMED_TYPE = "unnamed", "unknown"


@dataclass(frozen=True)
class SplitCoverage:
    anomalies: dict[str, dict[str, int]]  # split -> anomaly kind -> anomalous events
    device_types: dict[str, dict[str, int]]  # split -> device type -> events

    def gaps(self, min_test_anomalies: int) -> list[str]:
        """One line per reason the test split cannot judge a model; none when it can."""
        reasons = []
        unseen_kinds = _absent_from_training(self.anomalies)
        if unseen_kinds:
            reasons.append(f"the test split holds anomaly kinds training never saw: {unseen_kinds}")
        unseen_types = _absent_from_training(self.device_types)
        if unseen_types:
            reasons.append(f"the test split holds device types training never saw: {unseen_types}")
        total = sum(self.anomalies.get("test", {}).values())
        if total < min_test_anomalies:
            reasons.append(
                f"the test split holds {total} anomalies, fewer than the {min_test_anomalies} needed to judge"
            )
        return reasons

    def as_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        """As logged with every candidate's run (`split_coverage.json`)."""
        return {"anomalies_by_kind": self.anomalies, "events_by_device_type": self.device_types}

    def summary(self) -> str:
        """`train 403 anomalies (5 kinds), 4 device types; validation …` for a progress line."""
        return "; ".join(
            f"{split} {sum(kinds.values()):,} anomalies ({len(kinds)} kinds), "
            f"{len(self.device_types.get(split, {}))} device types"
            for split, kinds in sorted(self.anomalies.items(), key=lambda item: _SPLIT_ORDER.get(item[0], 9))
        )


_SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}


def _absent_from_training(counts: dict[str, dict[str, int]]) -> str:
    trained = counts.get("train", {})
    absent = sorted((name, n) for name, n in counts.get("test", {}).items() if name not in trained)
    return ", ".join(f"{name} ({n:,} events)" for name, n in absent)


def split_coverage(data: DataFrame) -> SplitCoverage:
    """Anomalies per kind and events per device type in each split of a training set."""
    kind = F.coalesce(F.col("anomaly_type"), F.lit(UNNAMED_KIND)).alias("name")
    device_type = F.coalesce(F.col("device_type"), F.lit(UNNAMED_TYPE)).alias("name")
    anomalies = data.where(F.col(LABEL) == 1).groupBy("split", kind).count().collect()
    types = data.groupBy("split", device_type).count().collect()
    return SplitCoverage(_nested(anomalies), _nested(types))


def _nested(rows: list[Row]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for row in rows:
        nested.setdefault(row["split"], {})[row["name"]] = int(row["count"])
    return nested
