"""The expectation suite of the labeled training window, declared from the telemetry contract.

Columns, types, nullability and sensor bounds come from `features.schema`; thresholds come from
`Settings`. Running the suite and reading its results is `pipelines.validation`'s job.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import great_expectations as gx
import pyarrow as pa
from great_expectations.expectations import (
    ExpectColumnMaxToBeBetween,
    ExpectColumnValuesToBeBetween,
    ExpectColumnValuesToBeInSet,
    ExpectColumnValuesToBeOfType,
    ExpectColumnValuesToBeUnique,
    ExpectColumnValuesToNotBeNull,
    ExpectTableColumnsToMatchSet,
    ExpectTableRowCountToBeBetween,
)
from pyspark.sql.pandas.types import from_arrow_schema

from features.schema import LABEL_SCHEMA, SENSOR_BOUNDS, TELEMETRY_SCHEMA
from infra.exceptions import ConfigError
from infra.settings import Settings

# What the training set is built from: each event with its ground truth.
LABELED_SCHEMA: pa.Schema = pa.unify_schemas([TELEMETRY_SCHEMA, LABEL_SCHEMA])
LABEL_COLUMNS: tuple[str, ...] = tuple(name for name in LABEL_SCHEMA.names if name not in TELEMETRY_SCHEMA.names)
SUITE_NAME = "training_window"


def _spark_type_names() -> dict[str, str]:
    """Each labeled column's Spark type as GX's Spark engine names it (`TimestampType`, ...)."""
    return {field.name: type(field.dataType).__name__ for field in from_arrow_schema(LABELED_SCHEMA).fields}


def _freshness_cutoff(settings: Settings, window_end: datetime) -> datetime:
    """The oldest acceptable newest event, as a naive local time.

    GX compares the column's max as pyspark collects it: a TimestampType comes back naive, in
    the Python process's local time zone, and comparing it with an aware datetime raises.
    """
    return (window_end - timedelta(hours=settings.validation.max_staleness_hours)).astimezone().replace(tzinfo=None)


def training_window_suite(settings: Settings, window_end: datetime) -> gx.ExpectationSuite:
    """The checks a window of labeled events must pass before a model trains on it."""
    low, high = settings.validation.min_anomaly_fraction, settings.validation.max_anomaly_fraction
    if low > high:
        raise ConfigError(
            f"WARDEN_VALIDATION_MIN_ANOMALY_FRACTION ({low}) is above WARDEN_VALIDATION_MAX_ANOMALY_FRACTION "
            f"({high}); no window could pass, lower the first or raise the second"
        )
    not_null = 1.0 - settings.validation.max_null_fraction
    expectations = [
        ExpectTableRowCountToBeBetween(min_value=settings.validation.min_rows),
        # Extra columns are allowed, as extra event fields are.
        ExpectTableColumnsToMatchSet(column_set=list(LABELED_SCHEMA.names), exact_match=False),
        *(ExpectColumnValuesToBeOfType(column=name, type_=kind) for name, kind in _spark_type_names().items()),
        *(ExpectColumnValuesToNotBeNull(column=f.name, mostly=not_null) for f in LABELED_SCHEMA if not f.nullable),
        *(
            ExpectColumnValuesToBeBetween(column=name, min_value=bounds[0], max_value=bounds[1])
            for name, bounds in SENSOR_BOUNDS.items()
        ),
        ExpectColumnValuesToBeUnique(column="event_id"),
        # Label balance as two set memberships: GX's Spark engine cannot take the mean of a boolean.
        ExpectColumnValuesToBeInSet(column="is_anomaly", value_set=[True], mostly=low),
        ExpectColumnValuesToBeInSet(column="is_anomaly", value_set=[False], mostly=1.0 - high),
        ExpectColumnMaxToBeBetween(column="ts", min_value=_freshness_cutoff(settings, window_end)),
    ]
    return gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
