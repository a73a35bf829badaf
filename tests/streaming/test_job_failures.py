"""What `warden stream` reads after a failure: the one-line reason it gives for a failed batch,
from the exception the batch raised (or, failing outside a batch, what Spark 4.2 reports), and
the batch that a restarted query runs again."""

from __future__ import annotations

from pathlib import Path

import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException, StreamingQueryException
from pyspark.sql import DataFrame, SparkSession

from infra.settings import load_settings
from streaming.job import failure_reason, unfinished_batch


@pytest.fixture(scope="module")
def query_failure(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> StreamingQueryException:
    """What Spark hands back for a query that failed: a real StreamingQueryException, from a
    query whose batch function raises."""

    def fail(_frame: DataFrame, _batch: int) -> None:
        raise RuntimeError("the online store is gone")

    checkpoint = tmp_path_factory.mktemp("failing-query")
    query = (
        spark.readStream.format("rate")
        .load()
        .writeStream.foreachBatch(fail)
        .option("checkpointLocation", str(checkpoint))
        .start()
    )
    with pytest.raises(StreamingQueryException) as failed:
        query.awaitTermination(120)
    return failed.value


def test_a_python_error_is_named_by_its_type_and_message(query_failure: StreamingQueryException) -> None:
    raised = RuntimeError("the online store is gone")
    assert failure_reason(raised, query_failure) == "RuntimeError: the online store is gone"


def test_a_spark_error_raised_into_python_is_named_by_its_class_and_condition(
    spark: SparkSession, query_failure: StreamingQueryException, tmp_path: Path
) -> None:
    with pytest.raises(AnalysisException) as missing:
        spark.read.parquet(str(tmp_path / "scored"))
    reason = failure_reason(missing.value, query_failure)
    assert reason.startswith("AnalysisException: [PATH_NOT_FOUND] Path does not exist:"), reason


def test_a_java_failure_is_named_by_its_innermost_cause(
    spark: SparkSession, query_failure: StreamingQueryException
) -> None:
    # A Java call that fails with a chain of causes: reflection wraps what the method threw.
    gateway = spark.sparkContext._gateway
    jvm = gateway.jvm
    argument_types = gateway.new_array(jvm.java.lang.Class, 1)
    argument_types[0] = jvm.java.lang.Class.forName("java.lang.String")
    parse = jvm.java.lang.Class.forName("java.lang.Integer").getMethod("parseInt", argument_types)
    arguments = gateway.new_array(jvm.java.lang.Object, 1)
    arguments[0] = "not a number"
    with pytest.raises(Py4JJavaError) as thrown:
        parse.invoke(None, arguments)
    assert "InvocationTargetException" in str(thrown.value.java_exception.toString())
    assert failure_reason(thrown.value, query_failure) == (
        'java.lang.NumberFormatException: For input string: "not a number"'
    )


def test_a_failure_outside_a_batch_is_named_by_spark_s_condition(query_failure: StreamingQueryException) -> None:
    reason = failure_reason(None, query_failure)
    assert reason.startswith("[STREAM_FAILED] "), reason
    assert "the online store is gone" in reason


def test_the_batch_run_again_is_the_one_with_offsets_and_no_commit(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    assert unfinished_batch(settings) is None  # no checkpoint yet
    for log, batches in (("offsets", [0, 1, 2]), ("commits", [0, 1])):
        (settings.checkpoint_dir / log).mkdir(parents=True)
        for batch in batches:
            (settings.checkpoint_dir / log / str(batch)).write_text("v1")
            (settings.checkpoint_dir / log / f".{batch}.crc").write_text("")
    assert unfinished_batch(settings) == 2
    (settings.checkpoint_dir / "commits" / "2").write_text("v1")
    assert unfinished_batch(settings) is None  # the next batch is a new one
