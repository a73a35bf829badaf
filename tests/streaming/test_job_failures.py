"""What `warden stream` reads after a failure: the one-line reason it gives for a failed batch,
from what Spark 4.2 reports, and the batch that a restarted query runs again."""

from __future__ import annotations

from pathlib import Path

from infra.settings import load_settings
from streaming.job import failure_reason, unfinished_batch

_HEAD = (
    "[STREAM_FAILED] Query [id = 2221d1da, runId = 7b95725a] terminated with exception: "
    "[FOREACH_BATCH_USER_FUNCTION_ERROR] An error occurred in the user provided function in foreach batch sink. "
    "Reason: An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):\n"
    '  File "/venv/site-packages/py4j/clientserver.py", line 644, in _call_proxy\n'
    "    return_value = getattr(self.pool[obj_id], method)(*params)\n"
    "                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/venv/site-packages/pyspark/sql/utils.py", line 163, in call\n'
    "    self.func(DataFrame(jdf, wrapped_session_jdf), batch_id)\n"
)
# What Spark appends after the error: the query's report, ending with its plan tree.
_REPORT = (
    " SQLSTATE: 39000 SQLSTATE: XXKST\n"
    "=== Streaming Query ===\n"
    "Identifier: [id = 2221d1da, runId = 7b95725a]\n"
    "Current Committed Offsets: {}\n\n"
    "Current State: ACTIVE\n"
    "Thread State: RUNNABLE\n\n"
    "Logical Plan:\n"
    "~WriteToMicroBatchDataSourceV1 ForeachBatchSink, 2221d1da, [checkpointLocation=/ck], Append\n"
    "+- ~StreamingDataSourceV2ScanRelation[key#7, value#8] KafkaTable\n"
)


def test_a_python_error_is_named_by_its_exception_line() -> None:
    raised = (
        '  File "/app/streaming/batch.py", line 6, in _context\n'
        '    raise RuntimeError("the online store is gone")\n'
        "RuntimeError: the online store is gone\n"
    )
    assert failure_reason(_HEAD + raised + _REPORT) == "RuntimeError: the online store is gone"


def test_a_spark_error_raised_into_python_is_named_by_its_exception_line() -> None:
    raised = (
        '  File "/venv/site-packages/pyspark/errors/exceptions/captured.py", line 257, in deco\n'
        "    raise converted from None\n"
        "pyspark.errors.exceptions.captured.AnalysisException: [PATH_NOT_FOUND] Path does not exist: "
        "file:/lake/scored. SQLSTATE: 42K03\n"
    )
    assert failure_reason(_HEAD + raised + _REPORT).startswith("pyspark.errors.exceptions.captured.AnalysisException")


def test_a_java_failure_is_named_by_its_innermost_cause() -> None:
    raised = (
        "py4j.protocol.Py4JJavaError: An error occurred while calling o812.parquet.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2935)\n"
        "Caused by: org.apache.hadoop.hdfs.BlockMissingException: Could not obtain block: BP-1:blk_1073741825\n"
        "\tat org.apache.hadoop.hdfs.DFSInputStream.refetchLocations(DFSInputStream.java:1069)\n"
    )
    assert failure_reason(_HEAD + raised + _REPORT) == (
        "org.apache.hadoop.hdfs.BlockMissingException: Could not obtain block: BP-1:blk_1073741825"
    )


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
