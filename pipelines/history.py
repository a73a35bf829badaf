"""What the lake holds, read by Spark: every event as one DataFrame (what statistics, validation
and training read), the ground truth, and any Parquet dataset whose absence is the user's to fix.

Events reach the lake two ways. A backfill (or an import) writes history to the `telemetry`
table. The stream writes each event it scores once, to `scored`, with its fields beside its
features and score: writing it a second time, to `telemetry`, cost every micro-batch a Spark job
and a Delta commit. History is therefore both tables' event columns, read as one.
"""

from __future__ import annotations

from functools import reduce

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from features.schema import EVENT_FIELDS
from infra.exceptions import LakeError
from infra.lake import PARTITION_COLUMN, Lake

# The tables that hold events: the backfilled history, and the stream's scored events.
EVENT_TABLES = ("telemetry", "scored")


def read_events(spark: SparkSession, lake: Lake) -> DataFrame:
    """The events of `telemetry` and `scored` (EVENT_FIELDS and the `date` partition), as of their
    latest commits. Either table may not exist yet; both missing is a `LakeError`."""
    frames = []
    for table in EVENT_TABLES:
        try:
            frames.append(spark.read.format("delta").load(lake.url(table)).select(*EVENT_FIELDS, PARTITION_COLUMN))
        except AnalysisException:  # not a Delta table (yet)
            continue
    if not frames:
        raise LakeError(
            f"no events under {lake.root}: neither telemetry/ nor scored/ is a Delta table; run `warden backfill`"
        )
    return reduce(DataFrame.unionByName, frames)


# What Spark says of a dataset that is not there: no folder, or a folder without a file.
_MISSING = ("PATH_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA")


def read_parquet(spark: SparkSession, location: str, missing: str) -> DataFrame:
    """The Parquet dataset at `location`; a LakeError saying `missing` (what it is, what to do)
    when there is none, or only its empty folder. Any other failure to read it propagates."""
    try:
        return spark.read.parquet(location)
    except AnalysisException as exc:
        if exc.getCondition() not in _MISSING:
            raise
        raise LakeError(missing) from None


def read_labels(spark: SparkSession, lake: Lake) -> DataFrame:
    """The ground truth (`labels`, as a backfill or `warden simulate` writes it)."""
    return read_parquet(spark, lake.url("labels"), f"labels missing under {lake.root}; run `warden backfill`")
