"""The retraining loop on real services: the `retrain` DAG under `dag.test()` (Spark, Feast,
Great Expectations, MLflow), the evaluation gate, and a person's decision through the real
Airflow API (`promote` DAG, ApprovalOperator) moving the `champion` alias — or not."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import requests

from infra.lake import Lake
from infra.settings import PROJECT_ROOT, Settings, get_settings, load_settings
from infra.stack import manager
from infra.stack.airflow import ADMIN_USER, AirflowStack
from infra.stack.mlflow import mlflow_password
from models import registry
from tests.conftest import airflow_get, run_warden

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = 2


def _use(env: dict[str, str]) -> dict[str, str | None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    get_settings.cache_clear()
    return saved


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def env(
    settings: Settings, session_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """MLflow running, a lake with two days of labeled history, a model name of this module's own.

    A home of its own too: the Feast store and Airflow live under it, and other modules' streams
    must not find this module's devices in their online store."""
    manager.up(settings, ["mlflow"])
    home = tmp_path_factory.mktemp("retrain-home")
    env = {
        **session_env,
        "WARDEN_HOME": str(home),
        "WARDEN_LAKE_ROOT": str(home / "lake"),
        "MLFLOW_TRACKING_PASSWORD": mlflow_password(settings),
        "WARDEN_MODEL_NAME": f"retrain-test-{os.getpid()}",
        "WARDEN_TRAINING_WINDOW_DAYS": str(DAYS),
    }
    result = run_warden(env, "backfill", "--days", str(DAYS), "--devices", "20", "--interval", "60", "--seed", "3")
    assert result.returncode == 0, result.stderr
    saved = _use(env)
    yield env
    _restore(saved)


@pytest.fixture(scope="module")
def airflow_db(env: dict[str, str]) -> None:
    """`dag.test()` runs the tasks in this process, against a migrated metadata database."""
    from airflow.utils.db import initdb

    initdb()


def _dag(dag_id: str):  # noqa: ANN202
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags" / f"{dag_id}.py")).dags[dag_id]


def _states(run) -> dict[str, str]:  # noqa: ANN001
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _client(env: dict[str, str]):  # noqa: ANN202
    return registry.configure_mlflow(load_settings())


def _versions(env: dict[str, str]) -> list[str]:
    client = _client(env)
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{env['WARDEN_MODEL_NAME']}'"))


@pytest.fixture(scope="module")
def retrained(env: dict[str, str], airflow_db: None) -> registry.VersionInfo:
    run = _dag("retrain").test()
    states = _states(run)
    assert str(run.state) == "success", states
    assert set(states.values()) == {"success"}, states
    challenger = registry.version_by_alias(_client(env), env["WARDEN_MODEL_NAME"], registry.CHALLENGER)
    assert challenger is not None, "the first promotable model goes straight to challenger"
    return challenger


def test_retrain_dag_registers_a_challenger_with_its_metrics(
    env: dict[str, str], retrained: registry.VersionInfo
) -> None:
    client = _client(env)
    version = client.get_model_version(env["WARDEN_MODEL_NAME"], retrained.version)
    assert version.tags[registry.TAG_PROMOTABLE] == "true"
    assert "no champion yet" in version.tags[registry.TAG_GATE_REASONS]
    assert retrained.kind in ("random_forest", "xgboost")
    assert 0.0 < retrained.threshold < 1.0
    metrics = client.get_run(retrained.run_id).data.metrics
    for name in ("test_precision", "test_recall", "test_f1", "test_pr_auc", "threshold"):
        assert name in metrics, name
    assert any(name.startswith("test_recall_") for name in metrics), "recall per anomaly kind"
    # Both kinds were trained and logged on the same training set.
    runs = client.search_runs([client.get_run(retrained.run_id).info.experiment_id], "tags.training_set LIKE '%'")
    assert {run.data.tags[registry.TAG_KIND] for run in runs} == {"random_forest", "xgboost"}


def test_the_registered_model_loads_with_the_streams_loader(spark, retrained: registry.VersionInfo) -> None:  # noqa: ANN001
    from models.loader import load_version

    model = load_version(spark, retrained)  # validates the feature list and a smoke prediction
    assert model.version == retrained.version


def test_a_retried_training_step_reuses_its_runs(env: dict[str, str], retrained: registry.VersionInfo) -> None:
    from pipelines import tasks
    from pipelines.training_set import Window

    client = _client(env)
    # The DAG run's own window: one computed from the clock now may be the next hour's.
    window = client.get_run(retrained.run_id).data.tags[registry.TAG_WINDOW]
    location = Lake(get_settings()).url(f"training_sets/{Window.parse(window).id}")
    experiment = client.get_run(retrained.run_id).info.experiment_id
    before = len(client.search_runs([experiment]))
    run_ids = tasks.train(window, location)
    assert retrained.run_id in run_ids
    assert len(client.search_runs([experiment])) == before


def test_a_candidate_that_does_not_beat_the_champion_is_registered_not_promotable(
    env: dict[str, str],
    spark,  # noqa: ANN001
    retrained: registry.VersionInfo,
) -> None:
    from pipelines.promotion import decide
    from pipelines.retrain import retrain, window_ending

    decide(get_settings(), retrained.version, True, "pytest", "first champion")
    strict = get_settings().model_copy(update={"gate_margin": 0.5})  # no model beats its champion by 0.5 F1
    report = retrain(strict, spark, window_ending(strict, datetime.now(UTC)), ("xgboost",), seed=7)
    assert report.verdict is not None and not report.verdict.promotable
    assert any("vs champion" in reason for reason in report.verdict.reasons), report.verdict.reasons
    assert report.version is not None and report.version.version != retrained.version
    client = _client(env)
    tags = client.get_model_version(env["WARDEN_MODEL_NAME"], report.version.version).tags
    assert tags[registry.TAG_PROMOTABLE] == "false"
    assert registry.version_by_alias(client, env["WARDEN_MODEL_NAME"], registry.CHALLENGER) is None
    assert registry.version_by_alias(client, env["WARDEN_MODEL_NAME"], registry.CHAMPION).version == retrained.version


def test_a_feature_row_from_after_an_event_is_never_joined_to_it(
    env: dict[str, str],
    spark,  # noqa: ANN001
    retrained: registry.VersionInfo,
) -> None:
    from features.formulas import STATS_TIME
    from pipelines.feature_refresh import STATS_DATASET
    from pipelines.training_set import point_in_time_stats

    settings = get_settings()
    step = timedelta(minutes=settings.feature_step_minutes)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    grid_point = end - 3 * step
    # A statistics row one second after the event, with values no real window has.
    planted = {
        "device_id": ["dev-00001"],
        "window_end": [grid_point + timedelta(seconds=1)],
        STATS_TIME: [grid_point + timedelta(seconds=1)],
        "count": [1],
    }
    from features.formulas import STATS_COLUMNS

    planted.update({column: [9999.0] for column in STATS_COLUMNS})
    table = pa.table(planted)
    Lake(settings).write_file(table, STATS_DATASET, "zz-planted-future.parquet")
    events = spark.createDataFrame(
        [("pit-1", "dev-00001", grid_point.replace(tzinfo=None))], "event_id string, device_id string, ts timestamp"
    )
    row = point_in_time_stats(settings, spark, events).first()
    assert row is not None
    assert row["mean_temperature"] != 9999.0
    assert row[STATS_TIME] is not None and row[STATS_TIME] <= grid_point.replace(tzinfo=None)


def test_corrupted_history_fails_validation_and_registers_nothing(
    env: dict[str, str], airflow_db: None, retrained: registry.VersionInfo
) -> None:
    settings = get_settings()
    lake = Lake(settings)
    telemetry = lake.read("telemetry").drop_columns(["date"])
    newest = telemetry.slice(telemetry.num_rows - 50)
    corrupt = newest.set_column(
        newest.schema.get_field_index("temperature"), "temperature", pa.array([5000.0] * newest.num_rows)
    )
    lake.write(corrupt, "telemetry", "corrupt-{i}.parquet")  # duplicated event ids, impossible values
    before = _versions(env)
    try:
        run = _dag("retrain").test()
        states = _states(run)
        assert states["validate"] == "failed", states
        assert states["build_training_set"] == "upstream_failed", states
        assert states["register"] == "upstream_failed", states
        assert _versions(env) == before
        client = _client(env)
        failed = client.search_runs(
            [client.get_run(retrained.run_id).info.experiment_id],
            "attributes.run_name LIKE 'validate-%' and attributes.status = 'FAILED'",
        )
        assert failed, "the failed validation report is kept in MLflow"
        artifacts = [a.path for a in client.list_artifacts(failed[0].info.run_id)]
        assert "validation_report.json" in artifacts
    finally:
        dates = sorted({d.as_py() for d in lake.read("telemetry", ["date"])["date"].unique()})
        lake.remove("telemetry", "corrupt-", dates)


# ---- a person's decision through the real Airflow API ----


@pytest.fixture(scope="module")
def airflow(env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    settings = load_settings()
    manager.up(settings, ["airflow"])
    stack = AirflowStack(settings)
    token = requests.post(
        f"{stack.url}/auth/token", json={"username": ADMIN_USER, "password": stack.admin_password()}, timeout=60
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    airflow_get(f"{stack.url}/api/v2/dags/promote", headers, 180, "the dag-processor to parse dags/promote.py")
    yield stack.url, headers
    manager.down(settings, ["airflow"])


def _decide_in_airflow(url: str, headers: dict[str, str], answer: str, reason: str) -> dict[str, str]:
    """Trigger `promote`, wait for its approval request, answer it as the admin, wait for the end."""
    run_id = requests.post(
        f"{url}/api/v2/dags/promote/dagRuns", json={"logical_date": None}, headers=headers, timeout=60
    ).json()["dag_run_id"]
    pending = f"{url}/api/v2/dags/promote/dagRuns/{run_id}/hitlDetails"
    airflow_get(
        pending,
        headers,
        240,
        "the approval request",
        lambda body: body["hitl_details"],
        params={"response_received": False},
    )
    # An answer within seconds of the task parking can race the worker's exit (Airflow 3.3).
    time.sleep(8)
    answer_url = f"{url}/api/v2/dags/promote/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
    response = requests.patch(
        answer_url, json={"chosen_options": [answer], "params_input": {"reason": reason}}, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    airflow_get(
        f"{url}/api/v2/dags/promote/dagRuns/{run_id}",
        headers,
        480,
        "the promote run to finish",
        lambda run: run["state"] in ("success", "failed"),
    )
    tasks = airflow_get(f"{url}/api/v2/dags/promote/dagRuns/{run_id}/taskInstances", headers, 120, "its task instances")
    return {ti["task_id"]: ti["state"] for ti in tasks["task_instances"]}


def test_approval_in_airflow_moves_the_champion(
    env: dict[str, str], retrained: registry.VersionInfo, airflow: tuple
) -> None:
    client = _client(env)
    name = env["WARDEN_MODEL_NAME"]
    # The not-promotable version of the gate test, put up for review again by hand.
    candidate = max(_versions(env), key=int)
    client.set_registered_model_alias(name, registry.CHALLENGER, candidate)
    states = _decide_in_airflow(*airflow, "Approve", "beats the champion on the test window")
    assert states["approve"] == "success" and states["promote_challenger"] == "success", states
    assert registry.version_by_alias(client, name, registry.CHAMPION).version == candidate
    assert registry.version_by_alias(client, name, registry.PREVIOUS).version == retrained.version
    tags = client.get_model_version(name, candidate).tags
    assert tags[registry.TAG_DECISION] == "approved"
    assert tags[registry.TAG_DECIDED_BY] == ADMIN_USER
    assert tags[registry.TAG_REASON] == "beats the champion on the test window"
    assert datetime.fromisoformat(tags[registry.TAG_DECIDED_AT]) > datetime.now(UTC) - timedelta(minutes=10)


def test_rejection_in_airflow_keeps_the_champion(
    env: dict[str, str], retrained: registry.VersionInfo, airflow: tuple
) -> None:
    client = _client(env)
    name = env["WARDEN_MODEL_NAME"]
    champion = registry.version_by_alias(client, name, registry.CHAMPION).version
    client.set_registered_model_alias(name, registry.CHALLENGER, retrained.version)
    states = _decide_in_airflow(*airflow, "Reject", "recall on drift too low")
    assert states["promote_challenger"] == "skipped" and states["record_rejection"] == "success", states
    assert registry.version_by_alias(client, name, registry.CHAMPION).version == champion
    assert registry.version_by_alias(client, name, registry.CHALLENGER) is None
    tags = client.get_model_version(name, retrained.version).tags
    assert tags[registry.TAG_DECISION] == "rejected"
    assert tags[registry.TAG_DECIDED_BY] == ADMIN_USER
    assert tags[registry.TAG_REASON] == "recall on drift too low"
