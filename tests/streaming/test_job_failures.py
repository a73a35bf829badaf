"""The one-line reason `warden stream` gives for a failed batch, from what Spark 4.2 reports."""

from __future__ import annotations

from streaming.job import failure_reason

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
