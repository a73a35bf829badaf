"""What each split of a training set holds, and when its test split cannot judge a model."""

from __future__ import annotations

import pytest

from pipelines.split_coverage import SplitCoverage, split_coverage

COLUMNS = ["device_id", "device_type", "anomaly_type", "label", "split"]


def _rows(split: str, device_type: str, normal: int, anomalies: dict[str | None, int]) -> list[tuple]:
    rows: list[tuple] = [("dev-1", device_type, None, 0, split)] * normal
    for kind, count in anomalies.items():
        rows += [("dev-1", device_type, kind, 1, split)] * count
    return rows


@pytest.mark.integration
def test_counts_anomalies_by_kind_and_events_by_device_type_in_each_split(spark) -> None:  # noqa: ANN001
    rows = _rows("train", "pump", 70, {"spike": 5, "stuck": 3}) + _rows("train", "hvac", 10, {})
    rows += _rows("validation", "pump", 15, {"spike": 2}) + _rows("test", "pump", 15, {"stuck": 4, None: 1})
    coverage = split_coverage(spark.createDataFrame(rows, COLUMNS))
    assert coverage.anomalies == {
        "train": {"spike": 5, "stuck": 3},
        "validation": {"spike": 2},
        "test": {"stuck": 4, "unnamed": 1},
    }
    assert coverage.device_types == {
        "train": {"pump": 78, "hvac": 10},
        "validation": {"pump": 17},
        "test": {"pump": 20},
    }
    # An anomaly without a kind is a kind training never saw.
    assert coverage.gaps(min_test_anomalies=5) == [
        "the test split holds anomaly kinds training never saw: unnamed (1 events)"
    ]
    assert coverage.summary().startswith("train 8 anomalies (2 kinds), 2 device types; validation")


def test_a_test_split_with_kinds_or_types_training_never_saw_or_too_few_anomalies_cannot_judge() -> None:
    # A fleet recorded experiment after experiment, split by the window's clock: training saw
    # one fault kind on pumps, the test holds another on compressors.
    coverage = SplitCoverage(
        anomalies={"train": {"spike": 40}, "validation": {"spike": 9}, "test": {"drift": 12, "spike": 3}},
        device_types={"train": {"pump": 900}, "validation": {"pump": 200}, "test": {"pump": 100, "compressor": 90}},
    )
    assert coverage.gaps(min_test_anomalies=30) == [
        "the test split holds anomaly kinds training never saw: drift (12 events)",
        "the test split holds device types training never saw: compressor (90 events)",
        "the test split holds 15 anomalies, fewer than the 30 needed to judge",
    ]
    covered = SplitCoverage(
        anomalies={"train": {"spike": 40, "drift": 30}, "test": {"drift": 12, "spike": 3}},
        device_types={"train": {"pump": 900, "compressor": 500}, "test": {"pump": 100, "compressor": 90}},
    )
    assert covered.gaps(min_test_anomalies=15) == []
    assert covered.gaps(min_test_anomalies=16) == [
        "the test split holds 15 anomalies, fewer than the 16 needed to judge"
    ]
