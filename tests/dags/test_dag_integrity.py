"""The DAG files parse cleanly, declare the expected tasks, and do no heavy work at parse time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.settings import PROJECT_ROOT

# What a task may import, but the scheduler's parse of a DAG file must not.
HEAVY = (
    "pyspark",
    "mlflow",
    "xgboost",
    "feast",
    "great_expectations",
    "sklearn",
    "pandas",
    "numpy",
    "models",
    "features",
    # Our settings and stages too: a DAG file declares, it reads no configuration at parse time.
    "infra",
    "pipelines",
)

_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
before = set(sys.modules)
# The dag-processor and the task runner put the DAG bundle's folder on sys.path (BundleDagBag):
# `promote` imports the approval operator beside it.
sys.path.append(sys.argv[1])
bag = DagBag(dag_folder=sys.argv[1])
loaded = {name.split(".")[0] for name in set(sys.modules) - before}
print(json.dumps({
    "errors": bag.import_errors,
    "dags": {d.dag_id: {t.task_id: sorted(t.downstream_task_ids) for t in d.tasks} for d in bag.dags.values()},
    "schedules": {d.dag_id: repr(d.timetable) for d in bag.dags.values()},
    "house_rules": {
        d.dag_id: {
            "owners": sorted({t.owner for t in d.tasks}),
            "min_retries": min(t.retries for t in d.tasks),
            "tags": sorted(d.tags),
            "has_doc": bool(d.doc_md),
            "params": sorted(d.params.keys()),
        }
        for d in bag.dags.values()
    },
    "parse_seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
    "loaded": sorted(loaded),
}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Parse dags/ in a fresh interpreter, as the dag-processor does, so sys.modules is clean."""
    home = tmp_path_factory.mktemp("airflow-parse")
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _PROBE, str(PROJECT_ROOT / "dags")],
        env={
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_dag_file_imports_without_errors(parsed: dict) -> None:
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == {"feature_refresh", "retrain", "promote"}


def test_retrain_validates_before_it_builds_and_registers_last(parsed: dict) -> None:
    edges = parsed["dags"]["retrain"]
    assert set(edges) == {"choose_window", "validate", "build_training_set", "train", "evaluate", "register"}
    assert "build_training_set" in edges["validate"]  # a failed validation stops the run before training
    assert edges["evaluate"] == ["register"]
    assert edges["register"] == []


def test_feature_refresh_compacts_the_lake_even_after_a_failed_refresh(parsed: dict) -> None:
    assert parsed["dags"]["feature_refresh"] == {"refresh": ["compact"], "compact": []}


def test_promote_waits_for_a_person_before_promoting(parsed: dict) -> None:
    edges = parsed["dags"]["promote"]
    assert edges["approve"] == ["promote_challenger"]
    assert "record_rejection" in edges["promote_challenger"]
    assert "approve" in edges["describe"]


@pytest.mark.parametrize("dag_id", ["feature_refresh", "retrain", "promote"])
def test_every_dag_keeps_the_house_rules(parsed: dict, dag_id: str) -> None:
    rules = parsed["house_rules"][dag_id]
    assert rules["owners"] == ["streamwarden"]  # not Airflow's anonymous default
    assert rules["min_retries"] >= 2, f"{dag_id}: every task retries at least twice"
    assert "streamwarden" in rules["tags"]
    assert rules["has_doc"]


@pytest.mark.parametrize("dag_id", ["retrain", "promote"])
def test_the_model_is_a_dag_parameter(parsed: dict, dag_id: str) -> None:
    assert parsed["house_rules"][dag_id]["params"] == ["model_name"]


def test_schedules_are_declared_in_the_dag_files(parsed: dict) -> None:
    assert "expression='*/15 * * * *'" in parsed["schedules"]["feature_refresh"]
    assert "expression='0 0 * * *'" in parsed["schedules"]["retrain"]  # @daily
    assert "name='model_challenger'" in parsed["schedules"]["promote"]  # runs when retrain registers one


def test_parsing_imports_nothing_heavy(parsed: dict, record_property: pytest.RecordProperty) -> None:
    # Parse time is recorded in the JUnit report, not asserted: it is a wall-clock figure.
    record_property("dag_parse_seconds", json.dumps(parsed["parse_seconds"]))
    heavy = sorted(set(parsed["loaded"]) & set(HEAVY))
    assert heavy == [], f"DAG files import {heavy} at parse time; import inside the tasks"
