"""The training set: labeled events with point-in-time features, split by time within each device."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import Window as SparkWindow
from pyspark.sql import functions as F

from features.formulas import REPORTED_COLUMNS
from features.logic import add_features, grid_floor, usable_stats
from features.point_in_time import historical_features
from features.store import FEATURE_SERVICE
from infra.context import Context
from infra.lake import PARTITION_COLUMN, Lake
from infra.memory import MeasuredStep
from infra.progress import ProgressLine
from infra.spark_progress import spark_progress
from models.estimators import LABEL
from models.registry import TAG_WINDOW
from pipelines.history import read_events, read_labels, read_parquet

SPLITS = ("train", "validation", "test")
_GRID = "_grid"
DATASET = "training_sets"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    @property
    def id(self) -> str:
        """A name for files and runs of this window: `20261118T0000-20261125T0000`."""
        return f"{self.start:%Y%m%dT%H%M}-{self.end:%Y%m%dT%H%M}"

    @classmethod
    def parse(cls, text: str) -> Window:
        """The inverse of `str(window)`."""
        start, _, end = text.partition("/")
        return cls(datetime.fromisoformat(start), datetime.fromisoformat(end))


def labeled_events(spark: SparkSession, lake: Lake, window: Window) -> DataFrame:
    """Telemetry in [start, end) joined with its ground truth (events without a label are left out)."""
    history = read_events(spark, lake)
    labels = read_labels(spark, lake)
    in_window = (F.col("ts") >= window.start) & (F.col("ts") < window.end)
    events = history.where(in_window).drop(PARTITION_COLUMN).dropDuplicates(["event_id"])
    truth = labels.where(in_window).select("event_id", "is_anomaly", "anomaly_type").dropDuplicates(["event_id"])
    return events.join(truth, "event_id")


def point_in_time_stats(ctx: Context, events: DataFrame) -> DataFrame:
    """Join each event with the newest device statistics whose window ended at or before it
    (and the newest baseline and registry row, the other views of the feature service), in
    Spark (`features.point_in_time`).

    Statistics exist only on the grid, so the newest row at or before `ts` is the newest at or
    before grid_floor(ts): the join looks up each (device, grid point) once, not each event.
    """
    keyed = events.withColumn(_GRID, grid_floor(F.col("ts"), ctx.settings.feature.step_minutes))
    with_stats = historical_features(ctx.spark, ctx.feature_store, FEATURE_SERVICE, keyed, _GRID, ctx.lake.spark_url)
    return with_stats.drop(_GRID)


def build_training_set(ctx: Context, window: Window) -> DataFrame:
    """Labeled events with FEATURE_COLUMNS, `label`, `device_type` and a time-ordered `split`.

    The split is by time within each device, never shuffled: each device's oldest 70 % of
    events trains, its next 15 % picks the threshold, its newest 15 % is the test split every
    candidate is judged on. Every split so holds every device, and with it the fleet's device
    types and operating regimes; a split by the window's clock would give a fleet recorded device
    after device (or experiment after experiment) different devices and faults in each split.
    `pipelines.split_coverage` checks what each split holds.
    """
    events = labeled_events(ctx.spark, ctx.lake, window)
    with_stats = usable_stats(point_in_time_stats(ctx, events), ctx.settings.feature.max_age_minutes)
    featured = add_features(with_stats).withColumn(LABEL, F.col("is_anomaly").cast("int"))
    position = F.percent_rank().over(SparkWindow.partitionBy("device_id").orderBy("ts", "event_id"))
    split = F.when(position < 0.70, "train").when(position < 0.85, "validation").otherwise("test")
    return featured.withColumn("split", split).select(
        "event_id",
        "device_id",
        "device_type",
        "ts",
        "anomaly_type",
        "feature_status",
        # The readings too: the unsupervised floor judges them.
        *REPORTED_COLUMNS,
        LABEL,
        "split",
    )


@dataclass(frozen=True)
class WrittenSet:
    location: str
    rows: int
    files: int


def write_training_set(ctx: Context, window: Window) -> WrittenSet:
    """Build the window's training set and write it to the lake, by Spark, never through Python.

    A re-run for the same window replaces it, so the step is safe to retry.
    """
    location = ctx.lake.url(f"{DATASET}/{window.id}")
    build_training_set(ctx, window).write.mode("overwrite").parquet(location)
    written = ctx.spark.read.parquet(location)
    return WrittenSet(location, written.count(), len(written.inputFiles()))


def prepare_training_set(ctx: Context, window: Window) -> str:
    """Refresh the window's statistics in Feast's offline source, then build and write the set;
    its size, time and peak memory go to a `training-set-<window>` run in MLflow. Its location."""
    from pipelines.feature_refresh import refresh_features

    history_start = window.start - timedelta(minutes=ctx.settings.feature.window_minutes)
    spark = ctx.start_spark()
    with MeasuredStep() as refreshing:
        refresh_features(ctx, window.end, history_start, ProgressLine("features"))
    progress = ProgressLine("training set")
    with MeasuredStep() as building:
        with spark_progress(spark, progress, "joining statistics point-in-time, writing the set"):
            written = write_training_set(ctx, window)
    progress.done(f"{written.rows:,} rows in {written.files} files at {written.location}, in {building.usage}")
    import mlflow

    mlflow.set_experiment(ctx.registry.name)
    with mlflow.start_run(run_name=f"training-set-{window.id}"):
        mlflow.set_tags({"stage": "training_set", TAG_WINDOW: str(window), "location": written.location})
        mlflow.log_metrics(
            {
                "training_set_rows": written.rows,
                "training_set_files": written.files,
                **refreshing.usage.as_metrics("refresh_"),
                **building.usage.as_metrics("build_"),
            }
        )
    return written.location


def read_training_set(spark: SparkSession, location: str) -> DataFrame:
    return read_parquet(spark, location, f"no training set at {location}; build it first")
