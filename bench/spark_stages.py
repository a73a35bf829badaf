"""Spark's own account of streamwarden's micro-batches, from its event log: the Spark SQL queries
each batch runs, the wall time, job time and task time of each (a query's wall time outside its
jobs is the driver's: planning, a Delta commit), and the part of the batch spent outside
all of them (the driver's Python: Feast, py4j, the Kafka transaction, the lake's file moves).

The bench turns the event log on for its profiled latency run only, through a Spark
configuration folder of its own (`SPARK_CONF_DIR`, whose `spark-defaults.conf` Spark's launcher
reads), so `warden stream` itself runs as its users start it.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

_SQL_EVENT = "org.apache.spark.sql.execution.ui.SparkListenerSQLExecution"
_PROGRESS_EVENT = "org.apache.spark.sql.streaming.StreamingQueryListener$QueryProgressEvent"
# A lake write is a Delta write (streaming/sinks.py) to `<lake>/<table>`.
_DELTA_WRITE = re.compile(r"SaveIntoDataSourceCommand|WriteIntoDelta")
_LAKE_TABLE = re.compile(r"/(telemetry|scored|rejected)(?=[\s,\])}]|$)", re.MULTILINE)
_OPERATOR = re.compile(r"(\w+) \(\d+\)")  # "HashAggregate (5)" in a plan's tree
_TASK_METRICS = {
    "task_run_ms": ("internal.metrics.executorRunTime", 1.0),
    "task_cpu_ms": ("internal.metrics.executorCpuTime", 1e-6),  # nanoseconds
    "gc_ms": ("internal.metrics.jvmGCTime", 1.0),
}


def event_log_env(folder: Path) -> dict[str, str]:
    """The environment that makes a Spark driver log its events under `folder`/events."""
    conf, events = folder / "conf", folder / "events"
    conf.mkdir(parents=True, exist_ok=True)
    events.mkdir(parents=True, exist_ok=True)
    (conf / "spark-defaults.conf").write_text(
        f"spark.eventLog.enabled true\nspark.eventLog.dir {events.as_uri()}\n"
        # One plain file (Spark 4 rolls a log into a folder of parts by default).
        "spark.eventLog.compress false\nspark.eventLog.rolling.enabled false\n"
    )
    return {"SPARK_CONF_DIR": str(conf)}


def _label(start: dict) -> str:
    """What a query does, from its physical plan: the lake dataset it writes, else its top
    operator; and whether it runs the model (a pandas UDF)."""
    plan = start.get("physicalPlanDescription", "")
    tree = plan.split("\n\n", 1)[0]  # the operator tree, before each operator's details
    model = " + model" if "ArrowEvalPython" in tree else ""
    written = _LAKE_TABLE.search(plan) if _DELTA_WRITE.search(plan) else None
    if written:
        return f"write {written.group(1)}{model}"
    top = next((op for op in _OPERATOR.findall(tree) if op != "AdaptiveSparkPlan"), "query")
    return f"{top}{model}"


def summarize(folder: Path, since: float) -> dict:
    """`_summarize`, or an `error` that says why the log could not be read: a view of the run,
    never a reason to lose it."""
    try:
        return _summarize(folder, since)
    except (OSError, ValueError, KeyError) as exc:
        return {"error": f"cannot read Spark's event log: {exc!r}"}


def _summarize(folder: Path, since: float) -> dict:
    """Medians over the batches with rows that started at or after `since` (unix seconds) in the
    newest event log under `folder`: per query label, its runs, wall and task times per batch;
    the trigger's own phases (Spark's `durationMs`); `addBatch` minus the queries' wall time."""
    logs = sorted((p for p in (folder / "events").glob("*") if p.is_file()), key=lambda p: p.stat().st_mtime)
    if not logs:
        return {"error": f"Spark wrote no event log file under {folder / 'events'}"}
    queries: dict[int, dict] = {}
    query_of_stage: dict[int, int] = {}
    job_started: dict[int, tuple[int, int]] = {}  # job id → (query, submission time)
    progress: list[dict] = []
    for line in logs[-1].read_text().splitlines():
        event = json.loads(line)
        kind = event["Event"]
        # A micro-batch is a query of its own, and what foreachBatch runs are queries nested in it.
        if kind == f"{_SQL_EVENT}Start" and event.get("rootExecutionId", event["executionId"]) != event["executionId"]:
            queries[event["executionId"]] = {
                "start": event["time"],
                "label": _label(event),
                "tasks": 0,
                "jobs": 0,
                "jobs_ms": 0.0,
                **dict.fromkeys(_TASK_METRICS, 0.0),
            }
        elif kind == f"{_SQL_EVENT}End" and event["executionId"] in queries:
            queries[event["executionId"]]["end"] = event["time"]
        elif kind == "SparkListenerJobStart" and "spark.sql.execution.id" in event.get("Properties", {}):
            execution = int(event["Properties"]["spark.sql.execution.id"])
            for stage in event["Stage IDs"]:
                query_of_stage[stage] = execution
            job_started[event["Job ID"]] = (execution, event["Submission Time"])
        elif kind == "SparkListenerJobEnd" and event["Job ID"] in job_started:
            execution, submitted = job_started.pop(event["Job ID"])
            if execution in queries:
                queries[execution]["jobs"] += 1
                queries[execution]["jobs_ms"] += event["Completion Time"] - submitted
        elif kind == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            query = queries.get(query_of_stage.get(info["Stage ID"], -1))
            if query is None:
                continue
            query["tasks"] += info["Number of Tasks"]
            values = {a["Name"]: float(a["Value"]) for a in info.get("Accumulables", []) if "Name" in a}
            for key, (name, scale) in _TASK_METRICS.items():
                query[key] += values.get(name, 0.0) * scale
        elif kind == _PROGRESS_EVENT:
            progress.append(event["progress"])
    batches = []
    for batch in progress:
        start = datetime.fromisoformat(batch["timestamp"].replace("Z", "+00:00")).timestamp() * 1000
        end = start + batch["durationMs"].get("triggerExecution", 0)
        if start < since * 1000 or not _rows(batch):
            continue
        ran = [q for q in queries.values() if start <= q["start"] <= end and "end" in q]
        batches.append((batch, ran))
    if not batches:
        return {"error": f"no batch with rows after {datetime.fromtimestamp(since):%H:%M:%S} in {logs[-1].name}"}
    return {"file": logs[-1].name, "batches": len(batches), **_medians(batches)}


def _outermost(queries: list[dict]) -> list[dict]:
    """The queries not run inside another (a Delta write runs its data query nested in its own)."""
    return [
        q
        for q in queries
        if not any(
            o is not q and o["start"] <= q["start"] and q["end"] <= o["end"] and o["label"] != q["label"]
            for o in queries
        )
    ]


def _rows(batch: dict) -> int:
    return sum(source.get("numInputRows", 0) for source in batch.get("sources", []))


def _medians(batches: list[tuple[dict, list[dict]]]) -> dict:
    per_label: dict[str, list[Counter[str]]] = defaultdict(lambda: [Counter() for _ in batches])
    outside, phases = [], defaultdict(list)
    for n, (batch, ran) in enumerate(batches):
        for query in ran:
            totals = per_label[query["label"]][n]
            totals["runs"] += 1
            totals["wall_ms"] += query["end"] - query["start"]
            for key in ("tasks", "jobs", "jobs_ms", *_TASK_METRICS):
                totals[key] += query[key]
        for phase, ms in batch["durationMs"].items():
            phases[phase].append(ms)
        outside.append(batch["durationMs"].get("addBatch", 0) - sum(q["end"] - q["start"] for q in _outermost(ran)))
    queries = [
        {
            "label": label,
            **{
                key: statistics.median(t[key] for t in totals)
                for key in ("runs", "wall_ms", "jobs", "jobs_ms", "tasks", *_TASK_METRICS)
            },
        }
        for label, totals in per_label.items()
    ]
    return {
        "rows": statistics.median(_rows(batch) for batch, _ in batches),
        "durations_ms": {phase: statistics.median(values) for phase, values in phases.items()},
        "queries": sorted(queries, key=lambda q: -q["wall_ms"]),
        "foreach_batch_outside_queries_ms": statistics.median(outside),
    }
