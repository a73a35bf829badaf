"""Data validation of the training window: the suite of `pipelines.expectations`, run with Great
Expectations on the labeled events a training set is built from.

GX validates the Spark DataFrame in place (its Spark datasource works with pyspark 4.2): only
the metrics reach the driver, never the rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import great_expectations as gx
from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from infra.context import Context
from infra.lake import PARTITION_COLUMN, Lake
from infra.memory import MeasuredStep
from infra.settings import Settings
from models.registry import TAG_WINDOW
from pipelines.exceptions import DataValidationError
from pipelines.expectations import LABEL_COLUMNS, SUITE_NAME, training_window_suite
from pipelines.history import read_events, read_labels
from pipelines.training_set import Window

# Counts, not examples: a list of unexpected values would scan the rows once more per check.
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    window: str
    rows: int
    failures: list[str]
    results: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data, for an MLflow artifact or a lake file."""
        return asdict(self)

    def summary(self) -> str:
        """One line for a person."""
        total = len(self.results["results"])
        if self.success:
            return f"passed {total}/{total} expectations on {self.rows:,} rows"
        return f"failed {len(self.failures)}/{total} on {self.rows:,} rows: " + "; ".join(self.failures)


def validate_window(ctx: Context, window: Window) -> ValidationReport:
    """Run the expectation suite on the window; the report is kept as an MLflow artifact either
    way, and a failure raises DataValidationError before anything is trained."""
    spark, lake = ctx.start_spark(), ctx.lake
    with MeasuredStep() as validating:
        report = validate_history(ctx.settings, spark, lake, window)
    import mlflow

    mlflow.set_experiment(ctx.registry.name)
    with mlflow.start_run(run_name=f"validate-{window.id}") as run:
        mlflow.set_tags({"stage": "validation", TAG_WINDOW: str(window)})
        mlflow.log_metrics(
            {
                "validation_rows": report.rows,
                "validation_failures": len(report.failures),
                **validating.usage.as_metrics(),
            }
        )
        mlflow.log_dict(report.as_dict(), "validation_report.json")
    if not report.success:
        ctx.registry.client.set_terminated(run.info.run_id, "FAILED")
        raise DataValidationError(report)
    return report


def validate_history(settings: Settings, spark: SparkSession, lake: Lake, window: Window) -> ValidationReport:
    """Validate the lake's labeled events in `window`, read as the training set reads them."""
    return validate_frame(_labeled_rows(spark, lake, window), settings, window)


def validate_frame(frame: DataFrame, settings: Settings, window: Window) -> ValidationReport:
    """Run the training-window suite on `frame`, the labeled events of `window`."""
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            progress_bars=ProgressBarsConfig(globally=False),
        ),
    )
    # Caching is ours (below): GX would persist the frame itself and never release it.
    source = context.data_sources.add_spark("lake", persist=False)
    batches = source.add_dataframe_asset("labeled_events").add_batch_definition_whole_dataframe("window")
    suite = context.suites.add(training_window_suite(settings, window.end))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE_NAME, data=batches, suite=suite))
    # Every check is a pass over the rows: read the lake once, not once per check.
    cached_here = not frame.is_cached
    if cached_here:
        frame.cache()
    try:
        result = validation.run(batch_parameters={"dataframe": frame}, result_format=_RESULT_FORMAT)
    finally:
        if cached_here:
            frame.unpersist()
    # The row-count check has counted the rows already: no extra Spark job for the report.
    counted = next(r for r in result.results if r.expectation_config.type == "expect_table_row_count_to_be_between")  # type: ignore[union-attr]
    return ValidationReport(
        success=bool(result.success),
        window=str(window),
        rows=counted.result["observed_value"],
        failures=[_describe(r, window, set(frame.columns)) for r in _in_suite_order(result, suite) if not r.success],
        results=result.to_json_dict(),  # type: ignore[no-untyped-call]
    )


def _labeled_rows(spark: SparkSession, lake: Lake, window: Window) -> DataFrame:
    """What `training_set.labeled_events` reads, without its de-duplication: repeated event ids
    are one of the things validation must see."""
    history = read_events(spark, lake)
    labels = read_labels(spark, lake)
    in_window = (F.col("ts") >= window.start) & (F.col("ts") < window.end)
    # A label column missing from the lake is for the suite to report, not for Spark to raise.
    truth = labels.where(in_window).select("event_id", *(c for c in LABEL_COLUMNS if c in labels.columns))
    return history.where(in_window).drop(PARTITION_COLUMN).join(truth, "event_id")


def _in_suite_order(
    result: ExpectationSuiteValidationResult, suite: gx.ExpectationSuite
) -> list[ExpectationValidationResult]:
    # GX returns results grouped by how it computed them; a person reads them in declaration order.
    order = {expectation.id: i for i, expectation in enumerate(suite.expectations)}
    return sorted(result.results, key=lambda r: order[r.expectation_config.id])  # type: ignore[union-attr]


def _error(result: ExpectationValidationResult) -> str | None:
    """The first line of the error that kept GX from evaluating the expectation, if one did."""
    info = result.exception_info or {}
    # One error of the expectation itself, or one per metric it could not compute.
    errors = [info] if "raised_exception" in info else list(info.values())
    for error in errors:
        if error.get("raised_exception"):
            return str(error.get("exception_message") or "unknown error").strip().splitlines()[0]
    return None


def _describe(result: ExpectationValidationResult, window: Window, columns: set[str]) -> str:
    """One line for a failed expectation: the column, what was found and what was expected."""
    config = result.expectation_config
    kwargs = config.kwargs  # type: ignore[union-attr]
    column = kwargs.get("column", "window")
    check = config.type.removeprefix("expect_")  # type: ignore[union-attr]
    if "column" in kwargs and column not in columns:
        return f"{column}: column missing, cannot check {check}"
    error = _error(result)
    if error:
        return f"{column}: cannot check {check}: {error}"
    found = result.result
    unexpected = found.get("unexpected_count", 0)
    match config.type:  # type: ignore[union-attr]
        case "expect_table_row_count_to_be_between":
            line = f"window: {found['observed_value']:,} labeled events, expected at least {kwargs['min_value']:,}"
        case "expect_table_columns_to_match_set":
            line = f"columns: missing {', '.join(sorted(set(kwargs['column_set']) - columns))}"
        case "expect_column_values_to_be_of_type":
            line = f"{column}: type {found['observed_value']}, expected {kwargs['type_']}"
        case "expect_column_values_to_not_be_null":
            share, allowed = found["unexpected_percent"], 100 * (1 - kwargs.get("mostly", 1.0))
            line = f"{column}: {unexpected:,} nulls ({share:.3g} %), at most {allowed:.3g} % allowed"
        case "expect_column_values_to_be_between":
            line = f"{column}: {unexpected:,} values outside [{kwargs['min_value']}, {kwargs['max_value']}]"
        case "expect_column_values_to_be_unique":
            line = f"{column}: {unexpected:,} rows share their {column} with another row"
        case "expect_column_values_to_be_in_set":
            line = _describe_label_balance(found, kwargs)
        case "expect_column_max_to_be_between":
            line = _describe_staleness(found["observed_value"], kwargs["min_value"], window.end)
        case _:  # a check added to the suite without its own wording
            line = f"{column}: {check} failed, observed {found.get('observed_value')}"
    return line


def _describe_label_balance(found: dict[str, Any], kwargs: dict[str, Any]) -> str:
    # The suite's in-set pair: [True] bounds the anomaly fraction from below, [False] from above.
    others = found["unexpected_count"] / max(found["element_count"] - found.get("missing_count", 0), 1)
    mostly = kwargs.get("mostly", 1.0)
    if kwargs["value_set"] == [True]:
        return f"is_anomaly: {100 * (1 - others):.3g} % of events are anomalies, expected at least {100 * mostly:.3g} %"
    return f"is_anomaly: {100 * others:.3g} % of events are anomalies, expected at most {100 * (1 - mostly):.3g} %"


def _describe_staleness(newest: datetime | None, cutoff: datetime, end: datetime) -> str:
    if newest is None:
        return "ts: no events, so no recent one"
    # Both are naive local times, as pyspark collects timestamps (see expectations._freshness_cutoff).
    age, allowed = end - newest.astimezone(UTC), end - cutoff.astimezone(UTC)
    return (
        f"ts: newest event {newest.astimezone(UTC):%Y-%m-%d %H:%M} UTC is {age.total_seconds() / 3600:.1f} h "
        f"before the window end, at most {allowed.total_seconds() / 3600:g} h allowed"
    )
