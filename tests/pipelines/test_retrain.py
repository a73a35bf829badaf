"""The retraining loop on real services: the `retrain` DAG under `dag.test()` (Spark, Feast,
Great Expectations, MLflow), the evaluation gate, and a person's decision through the real
Airflow API (`promote` DAG, ApprovalOperator) moving the `champion` alias — or not."""

from __future__ import annotations

import dataclasses
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from pyspark.sql import functions as F

from infra.context import Context
from infra.lake import Lake
from infra.settings import load_settings
from infra.stack.airflow import ADMIN_USER
from models import registry
from tests.conftest import DEVICES, AirflowApi, Trained, airflow_get, dag, run_warden, task_states

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _context() -> Context:
    """A context for the session's settings, read from its environment as a task's are."""
    return Context.build("warden-tests")


def _registry() -> registry.ModelRegistry:
    return _context().registry


def _client():  # noqa: ANN202
    return _registry().client


def _versions() -> list[str]:
    name = load_settings().model_name
    return sorted(str(v.version) for v in _client().search_model_versions(f"name = '{name}'"))


@pytest.fixture(scope="module")
def retrained(trained: Trained) -> registry.VersionInfo:
    """The session's one training: the `retrain` DAG on the session's history."""
    return trained.challenger


def test_retrain_dag_registers_a_challenger_with_its_metrics(retrained: registry.VersionInfo) -> None:
    client = _client()
    version = client.get_model_version(load_settings().model_name, retrained.version)
    assert version.tags[registry.TAG_PROMOTABLE] == "true"
    assert "no champion yet" in version.tags[registry.TAG_GATE_REASONS]
    assert retrained.kind in ("random_forest", "xgboost")
    assert 0.0 < retrained.threshold < 1.0
    metrics = client.get_run(retrained.run_id).data.metrics
    for name in ("test_precision", "test_recall", "test_f1", "test_pr_auc", "threshold"):
        assert name in metrics, name
    assert any(name.startswith("test_recall_") for name in metrics), "recall per anomaly kind"
    # Beside the model: the best F1 its test labels allow, and the unsupervised per-device floor.
    assert metrics["test_best_f1"] >= metrics["test_f1"]
    assert 0.0 <= metrics["floor_test_f1"] <= 1.0 and 0.0 <= metrics["floor_test_pr_auc"] <= 1.0
    # Both kinds were trained and logged on the same training set.
    runs = client.search_runs([client.get_run(retrained.run_id).info.experiment_id], "tags.training_set LIKE '%'")
    assert {run.data.tags[registry.TAG_KIND] for run in runs} == {"random_forest", "xgboost"}


def test_every_device_is_split_by_its_own_clock_and_the_coverage_is_logged(
    spark,  # noqa: ANN001
    retrained: registry.VersionInfo,
) -> None:
    import mlflow

    from pipelines.training import TAG_TRAINING_SET
    from pipelines.training_set import read_training_set

    run = _client().get_run(retrained.run_id)
    data = read_training_set(spark, run.data.tags[TAG_TRAINING_SET])
    spans = {
        (row["device_id"], row["split"]): (row["first"], row["last"])
        for row in data.groupBy("device_id", "split")
        .agg(F.min("ts").alias("first"), F.max("ts").alias("last"))
        .collect()
    }
    devices = {device for device, _ in spans}
    assert len(devices) == DEVICES
    # Every event has statistics but those of each device's first grid step (a reading a minute;
    # the window before it holds none): Feast, asked for all views at once, dropped the first
    # day's, before the first baseline.
    missing = data.where(F.col("feature_status") == "missing").count()
    assert 0 < missing <= DEVICES * load_settings().feature.step_minutes, missing
    for device in devices:
        train, validation, test = (spans[(device, split)] for split in ("train", "validation", "test"))
        assert train[1] <= validation[0] and validation[1] <= test[0], device
    coverage = mlflow.artifacts.load_dict(f"runs:/{retrained.run_id}/split_coverage.json")
    kinds = coverage["anomalies_by_kind"]
    assert set(kinds["test"]) <= set(kinds["train"]) and sum(kinds["test"].values()) > 0
    assert set(coverage["events_by_device_type"]["test"]) <= set(coverage["events_by_device_type"]["train"])


def test_the_gate_refuses_a_candidate_below_the_unsupervised_floor_or_a_test_split_too_small_to_judge(
    spark,  # noqa: ANN001
    retrained: registry.VersionInfo,
) -> None:
    import mlflow

    from models.evaluation import Quality
    from pipelines.gate import judge
    from pipelines.training import TAG_TRAINING_SET, Candidate

    client = _client()
    trained_run = client.get_run(retrained.run_id)
    candidate = Candidate.of(trained_run)
    assert candidate.floor is not None and candidate.quality.f1 > candidate.floor.f1
    # The session's candidate, judged on its own run's copy: the session's run keeps its verdict.
    with mlflow.start_run(experiment_id=trained_run.info.experiment_id, run_name="gate-refusals") as run:
        pass
    perfect_floor = Quality(1.0, 1.0, 1.0, 1.0, candidate.quality.rows, candidate.quality.positives)
    below = dataclasses.replace(candidate, run_id=run.info.run_id, floor=perfect_floor)
    strict = load_settings().updated(gate_min_test_anomalies=10**6)
    verdict = judge(strict, spark, _registry(), trained_run.data.tags[TAG_TRAINING_SET], [below])
    assert not verdict.promotable
    failures = [r for r in verdict.reasons if "z-score" in r or "needed to judge" in r]
    assert failures[0].startswith(f"the test split holds {candidate.quality.positives} anomalies, fewer than the")
    assert failures[1] == (
        f"test f1 {candidate.quality.f1:.3f}, pr_auc {candidate.quality.pr_auc:.3f} vs the per-device z-score's "
        "1.000, 1.000"
    )
    assert client.get_run(run.info.run_id).data.tags[registry.TAG_PROMOTABLE] == "false"
    assert client.get_run(retrained.run_id).data.tags[registry.TAG_PROMOTABLE] == "true"


def test_the_registered_model_loads_with_the_streams_loader(spark, retrained: registry.VersionInfo) -> None:  # noqa: ANN001
    from models.loader import load_version

    model = load_version(spark, retrained)  # validates the feature list and a smoke prediction
    assert model.version == retrained.version


def test_a_retried_training_step_reuses_its_runs(retrained: registry.VersionInfo) -> None:
    from pipelines import tasks
    from pipelines.training_set import Window

    client = _client()
    # The DAG run's own window: one computed from the clock now may be the next hour's.
    window = client.get_run(retrained.run_id).data.tags[registry.TAG_WINDOW]
    location = Lake(load_settings()).url(f"training_sets/{Window.parse(window).id}")
    experiment = client.get_run(retrained.run_id).info.experiment_id
    before = len(client.search_runs([experiment]))
    run_ids = tasks.train(window, location)
    assert retrained.run_id in run_ids
    assert len(client.search_runs([experiment])) == before


def test_a_window_too_large_to_collect_trains_in_bounded_memory_to_a_registered_version(
    spark,  # noqa: ANN001
    retrained: registry.VersionInfo,
    session_env: dict[str, str],
) -> None:
    """`warden train` with a driver that may take at most 2 MB back from Spark in one job: the
    training set is several times that, so a step that collected it (into pandas, or Feast's
    point-in-time join in one process) would fail; XGBoost fits on a bounded sample."""
    from features.formulas import FEATURE_COLUMNS

    bounded = {
        **session_env,
        "WARDEN_MODEL_NAME": "iot-anomaly-bounded",
        "WARDEN_SPARK_DRIVER_MEMORY": "1g",
        "WARDEN_SPARK_DRIVER_MAX_RESULT_SIZE": "2m",
        "WARDEN_XGB_MAX_ROWS": "4000",
    }
    result = run_warden(bounded, "train", "--kind", "xgboost")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "training set" in result.stdout and "peak memory" in result.stdout, result.stdout

    client = _client()
    experiment = client.get_experiment_by_name("iot-anomaly-bounded")
    (built,) = client.search_runs([experiment.experiment_id], "tags.stage = 'training_set'")
    rows = built.data.metrics["training_set_rows"]
    # As float32 features alone, the training set is larger than the driver may collect.
    assert rows * len(FEATURE_COLUMNS) * 4 > 2 * 1024 * 1024
    assert spark.read.parquet(built.data.tags["location"]).count() == rows
    (fitted,) = client.search_runs([experiment.experiment_id], f"tags.{registry.TAG_KIND} = 'xgboost'")
    params, metrics = fitted.data.params, fitted.data.metrics
    assert int(params["xgb_rows_expected"]) == 4000 < int(params["rows_train"])
    assert float(params["xgb_negative_fraction"]) < 1.0
    # Each step's time and peak memory, for the process and the Spark driver's JVM beside it.
    for prefix in ("fit_", "judge_"):
        assert metrics[f"{prefix}peak_rss_mb_python"] > 0 and metrics[f"{prefix}peak_rss_mb_child"] > 0
    assert built.data.metrics["build_peak_rss_mb_child"] > 0
    versions = client.search_model_versions("name = 'iot-anomaly-bounded'")
    assert [v.run_id for v in versions] == [fitted.info.run_id]


def test_a_candidate_that_does_not_beat_the_champion_is_registered_not_promotable(
    spark,  # noqa: ANN001
    retrained: registry.VersionInfo,
) -> None:
    from pipelines.promotion import decide
    from pipelines.retrain import retrain, window_ending

    decide(_registry(), retrained.version, True, "pytest", "first champion")
    strict = load_settings().updated(gate_margin=0.5)  # no model beats its champion by 0.5 F1
    report = retrain(
        Context.build("warden-tests", strict), window_ending(strict, datetime.now(UTC)), ("xgboost",), seed=7
    )
    assert report.verdict is not None and not report.verdict.promotable
    assert any("vs champion" in reason for reason in report.verdict.reasons), report.verdict.reasons
    assert report.version is not None and report.version.version != retrained.version
    client = _client()
    tags = client.get_model_version(load_settings().model_name, report.version.version).tags
    assert tags[registry.TAG_PROMOTABLE] == "false"
    assert _registry().by_alias(registry.CHALLENGER) is None
    assert _registry().by_alias(registry.CHAMPION).version == retrained.version


def test_a_version_the_gate_refused_is_approved_only_with_an_explicit_override(
    retrained: registry.VersionInfo,
) -> None:
    from models.exceptions import PromotionRefused
    from pipelines.promotion import decide

    name = load_settings().model_name
    refused = max(_versions(), key=int)  # the gate test's candidate, which did not beat the champion
    with pytest.raises(PromotionRefused, match=r"version \d+ failed the gate \(.*vs champion.*\).*--override-gate"):
        decide(_registry(), refused, True, "pytest", "looks fine to me")
    # The command line says it in one line, and nothing moved.
    result = run_warden({}, "promote", "--version", refused, "--approve", "--reason", "looks fine", "--by", "pytest")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "--override-gate" in result.stderr, result.stderr
    assert _registry().by_alias(registry.CHAMPION).version == retrained.version
    tags = _client().get_model_version(name, refused).tags
    assert registry.TAG_DECISION not in tags and registry.TAG_GATE_OVERRIDDEN not in tags


def test_a_feature_row_from_after_an_event_is_never_joined_to_it(
    spark,  # noqa: ANN001
    retrained: registry.VersionInfo,
    tmp_path: Path,
) -> None:
    from features.formulas import STATS_TIME
    from pipelines.feature_refresh import STATS_DATASET
    from pipelines.training_set import point_in_time_stats

    # A copy of the session's statistics: the planted row must not reach another test's training set.
    settings = load_settings().model_copy(update={"lake_root": str(tmp_path / "lake")})
    shutil.copytree(Path(load_settings().lake_url) / STATS_DATASET, Path(settings.lake_url) / STATS_DATASET)
    step = timedelta(minutes=settings.feature.step_minutes)
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
    row = point_in_time_stats(Context.build("warden-tests", settings), events).first()
    assert row is not None
    assert row["mean_temperature"] != 9999.0
    assert row[STATS_TIME] is not None and row[STATS_TIME] <= grid_point.replace(tzinfo=None)


def test_corrupted_history_fails_validation_and_registers_nothing(retrained: registry.VersionInfo) -> None:
    settings = load_settings()
    lake = Lake(settings)
    telemetry = lake.read_table("telemetry").drop_columns(["date"])
    newest = telemetry.slice(telemetry.num_rows - 50)
    corrupt = newest.set_column(
        newest.schema.get_field_index("temperature"), "temperature", pa.array([5000.0] * newest.num_rows)
    )
    lake.append_table("telemetry", corrupt)  # duplicated event ids, impossible values
    before = _versions()
    try:
        run = dag("retrain").test()
        states = task_states(run)
        assert states["validate"] == "failed", states
        assert states["build_training_set"] == "upstream_failed", states
        assert states["register"] == "upstream_failed", states
        assert _versions() == before
        client = _client()
        failed = client.search_runs(
            [client.get_run(retrained.run_id).info.experiment_id],
            "attributes.run_name LIKE 'validate-%' and attributes.status = 'FAILED'",
        )
        assert failed, "the failed validation report is kept in MLflow"
        artifacts = [a.path for a in client.list_artifacts(failed[0].info.run_id)]
        assert "validation_report.json" in artifacts
    finally:
        lake.delete_rows("telemetry", "temperature = 5000.0")


# ---- a person's decision through the real Airflow API ----


def _decide_in_airflow(airflow: AirflowApi, answer: str, reason: str, **answers: object) -> dict[str, str]:
    """Trigger `promote`, wait for its approval request, answer it as the admin, wait for the end."""
    url, headers = airflow.url, airflow.headers
    run_id = airflow.trigger("promote")
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
        answer_url,
        # The form sends every field it declares (Airflow refuses an answer that lacks one).
        json={"chosen_options": [answer], "params_input": {"reason": reason, "override_gate": False, **answers}},
        headers=headers,
        timeout=60,
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


def test_approval_in_airflow_moves_the_champion(retrained: registry.VersionInfo, airflow: AirflowApi) -> None:
    client = _client()
    name = load_settings().model_name
    # The not-promotable version of the gate test, put up for review again by hand: the reviewer
    # approves it over the gate's refusal, explicitly.
    candidate = max(_versions(), key=int)
    client.set_registered_model_alias(name, registry.CHALLENGER, candidate)
    states = _decide_in_airflow(airflow, "Approve", "beats the champion on the test window", override_gate=True)
    assert states["approve"] == "success" and states["promote_challenger"] == "success", states
    assert _registry().by_alias(registry.CHAMPION).version == candidate
    assert _registry().by_alias(registry.PREVIOUS).version == retrained.version
    tags = client.get_model_version(name, candidate).tags
    assert tags[registry.TAG_DECISION] == "approved"
    assert tags[registry.TAG_DECIDED_BY] == ADMIN_USER
    assert tags[registry.TAG_REASON] == "beats the champion on the test window"
    assert tags[registry.TAG_GATE_OVERRIDDEN] == "true"
    assert datetime.fromisoformat(tags[registry.TAG_DECIDED_AT]) > datetime.now(UTC) - timedelta(minutes=10)


def test_rejection_in_airflow_keeps_the_champion(retrained: registry.VersionInfo, airflow: AirflowApi) -> None:
    client = _client()
    name = load_settings().model_name
    champion = _registry().by_alias(registry.CHAMPION).version
    client.set_registered_model_alias(name, registry.CHALLENGER, retrained.version)
    states = _decide_in_airflow(airflow, "Reject", "recall on drift too low")
    assert states["promote_challenger"] == "skipped" and states["record_rejection"] == "success", states
    assert _registry().by_alias(registry.CHAMPION).version == champion
    assert _registry().by_alias(registry.CHALLENGER) is None
    tags = client.get_model_version(name, retrained.version).tags
    assert tags[registry.TAG_DECISION] == "rejected"
    assert tags[registry.TAG_DECIDED_BY] == ADMIN_USER
    assert tags[registry.TAG_REASON] == "recall on drift too low"
