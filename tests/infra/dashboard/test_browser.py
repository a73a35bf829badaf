"""`warden dashboard` and the UIs, in headless Chromium, against the real services.

First a dashboard whose sources are missing (no stream, MLflow not answering, an empty alert
topic): each panel says so and the page keeps updating. Then the whole loop: the stream scoring
the simulator's events, a promotion approved in the Airflow UI's Required Actions, the
dashboard showing the new champion and its swap marker, the MLflow UI showing the alias.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By

from infra.context import Context
from infra.secrets import mlflow_password
from infra.settings import Settings
from infra.stack.airflow import ADMIN_USER, AirflowStack
from infra.stack.kafka import KafkaBroker
from models import registry
from tests.browser import chromium, console_errors, screenshot, wait_until
from tests.conftest import (
    DEVICES,
    AirflowApi,
    Trained,
    WardenProcess,
    airflow_get,
    copy_feature_store,
    free_port,
    register_copies,
    settings_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait_healthy(url: str, process: WardenProcess, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.proc.poll() is None, f"the dashboard exited:\n{process.output()[-2000:]}"
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"the dashboard at {url} never answered:\n{process.output()[-2000:]}")


def _text(browser, selector: str) -> str:  # noqa: ANN001
    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


# ---- a dashboard with nothing to show ----


@pytest.fixture(scope="module")
def orphan(
    kafka: Settings, session_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, WardenProcess]]:
    """A dashboard with no stream ever run, MLflow not answering and an empty alert topic."""
    home = tmp_path_factory.mktemp("orphan-home")
    env = {
        **session_env,
        "WARDEN_HOME": str(home),
        "WARDEN_DASHBOARD_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "WARDEN_TOPIC_ALERTS": "dashboard_empty_alerts",
    }
    KafkaBroker(settings_for(env)).ensure_topics()
    dashboard = WardenProcess(env, home / "dashboard.log", "dashboard")
    url = f"http://127.0.0.1:{env['WARDEN_DASHBOARD_PORT']}"
    _wait_healthy(url, dashboard)
    yield url, dashboard
    dashboard.kill()


def test_missing_sources_are_named_in_the_snapshot(orphan: tuple[str, WardenProcess]) -> None:
    url, _ = orphan

    def ready() -> dict:
        snapshot = requests.get(f"{url}/api/snapshot", timeout=10).json()
        asked = (
            snapshot["registry"]["message"] != "asking MLflow"
            and snapshot["alerts"]["message"] != "connecting to Kafka"
        )
        return snapshot if asked else {}

    deadline = time.monotonic() + 60
    while not (snapshot := ready()):
        assert time.monotonic() < deadline, "the feeds never reported"
        time.sleep(1)
    assert snapshot["stream"]["state"] == "never ran"
    assert "`warden stream`" in snapshot["stream"]["message"]
    assert snapshot["registry"]["available"] is False
    assert "does not answer" in snapshot["registry"]["message"]
    assert snapshot["alerts"]["available"] is True
    assert snapshot["alerts"]["message"] == 'No alerts on topic "dashboard_empty_alerts" yet.'


def test_the_page_says_what_is_missing_and_keeps_updating(orphan: tuple[str, WardenProcess]) -> None:
    url, _ = orphan
    with chromium() as browser:
        browser.get(url)
        wait_until(browser, lambda: "updated" in _text(browser, "#updated"), 30, "a first snapshot", "orphan")
        first = _text(browser, "#updated")
        wait_until(
            browser,
            lambda: "does not answer" in _text(browser, "#panel-models .missing"),
            60,
            "the registry's message",
            "orphan",
        )
        assert "has not run yet" in _text(browser, "#panel-rates .missing")
        assert "has not run yet" in _text(browser, "#panel-latency .missing")
        assert "No alerts" in _text(browser, "#panel-alerts .missing")
        assert _text(browser, "#stream-state") == "stream: never ran"
        wait_until(browser, lambda: _text(browser, "#updated") != first, 30, "the next snapshot", "orphan")
        screenshot(browser, "dashboard-missing-sources")
        assert console_errors(browser) == []


# ---- the whole loop ----


@pytest.fixture(scope="module")
def loop(
    trained: Trained, airflow: AirflowApi, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """A champion (v1) scoring in `warden stream`, a challenger (v2) waiting, the dashboard
    running under a home of this module's own; the session's Airflow reviews the challenger."""
    home = tmp_path_factory.mktemp("dashboard-home")
    copy_feature_store(settings, home)
    env = {
        "WARDEN_HOME": str(home),
        "WARDEN_LAKE_ROOT": str(home / "lake"),
        "MLFLOW_TRACKING_PASSWORD": mlflow_password(settings),
        "WARDEN_MODEL_NAME": f"dashboard-test-{os.getpid()}",
        "WARDEN_METRICS_PORT": str(free_port()),
        "WARDEN_DASHBOARD_PORT": str(free_port()),
        "WARDEN_CHAMPION_POLL_SECONDS": "2",
        "WARDEN_STREAM_STARTING_OFFSETS": "latest",
        "WARDEN_TOPIC_TELEMETRY": "dashboard_telemetry",
        "WARDEN_TOPIC_ALERTS": "dashboard_alerts",
        "WARDEN_TOPIC_DLQ": "dashboard_dlq",
    }
    ours = settings_for(env)
    KafkaBroker(ours).ensure_topics()
    # The challenger is the same artifact registered again, as a re-registration after review would be.
    champion, challenger = register_copies(ours, trained, ["xgboost", "xgboost"])
    models = Context.build("warden-tests", ours).registry
    models.promote(champion.version, "pytest", "first champion")
    models.set_challenger(challenger)

    processes = [
        WardenProcess(env, home / "stream.log", "stream"),
        WardenProcess(env, home / "dashboard.log", "dashboard"),
    ]
    try:
        yield {
            "env": env,
            "settings": ours,
            "airflow": airflow,
            "airflow_password": AirflowStack(settings).admin_password(),
            "stream": processes[0],
            "dashboard": processes[1],
            "champion": champion.version,
            "challenger": challenger.version,
        }
    finally:
        for process in processes:
            process.kill()


def _simulate(env: dict[str, str], seconds: int) -> subprocess.Popen[bytes]:
    warden = str(Path(sys.executable).with_name("warden"))
    return subprocess.Popen(  # noqa: S603
        [
            warden,
            "simulate",
            "--devices",
            str(DEVICES),
            "--rate",
            "400",
            "--duration",
            str(seconds),
            "--anomaly-rate",
            "0.05",
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _number(text: str) -> float:
    return float(text.replace(",", "")) if text not in ("", "–") else -1.0


def test_the_dashboard_moves_while_the_simulator_runs(loop: dict) -> None:
    settings: Settings = loop["settings"]
    _wait_healthy(settings.dashboard_url, loop["dashboard"])
    simulator = _simulate(loop["env"], 240)
    try:
        with chromium() as browser:
            browser.get(settings.dashboard_url)
            wait_until(
                browser,
                lambda: _text(browser, "#stream-state") == "stream: running",
                240,
                "the stream to run",
                "dashboard-live",
            )
            first = wait_until(
                browser, lambda: _number(_text(browser, "#tile-total")) > 0, 240, "scored events", "dashboard-live"
            )
            scored = _number(_text(browser, "#tile-total"))
            wait_until(
                browser,
                lambda: _number(_text(browser, "#tile-total")) > scored,
                120,
                "the scored count to grow",
                "dashboard-live",
            )
            assert first
            wait_until(
                browser,
                lambda: browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr"),
                180,
                "alerts in the table",
                "dashboard-live",
            )
            row = browser.find_element(By.CSS_SELECTOR, "#alerts tbody tr").text
            assert f"v{loop['champion']}" in row
            assert _number(_text(browser, "#tile-in")) > 0
            assert browser.find_elements(By.CSS_SELECTOR, "#chart-rates polyline")
            # A point of the scored series above the zero line (SVG's y grows downwards; the first grid line is 0).
            scored_moved = """const zero = +document.querySelector('#chart-rates line.grid').getAttribute('y1');
                const line = document.querySelector('#chart-rates polyline[data-series=scored]');
                return !!line && line.getAttribute('points').split(' ').some((p) => +p.split(',')[1] < zero);"""
            assert browser.execute_script(scored_moved), "the scored series stayed at 0"
            assert browser.find_elements(By.CSS_SELECTOR, "#chart-lag rect.bar")
            assert f"champion: v{loop['champion']}" in _text(browser, "#champion-badge")
            assert "challenger" in _text(browser, "#models thead")
            screenshot(browser, "dashboard-live")
            assert console_errors(browser) == []
    finally:
        simulator.terminate()  # it has done its part
        simulator.wait(60)


def _airflow_login(browser, url: str, password: str) -> None:  # noqa: ANN001
    browser.get(f"{url}/auth/login")
    wait_until(browser, lambda: browser.find_element(By.NAME, "username"), 120, "the login form", "airflow-login")
    browser.find_element(By.NAME, "username").send_keys(ADMIN_USER)
    browser.find_element(By.NAME, "password").send_keys(password)
    screenshot(browser, "airflow-1-login")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(browser, lambda: "/auth/login" not in browser.current_url, 120, "the login to finish", "airflow-login")


def test_a_promotion_approved_in_the_airflow_ui_reaches_the_dashboard(loop: dict) -> None:
    settings: Settings = loop["settings"]
    airflow: AirflowApi = loop["airflow"]
    url, headers = airflow.url, airflow.headers
    api = f"{url}/api/v2/dags/promote"
    run_id = airflow.trigger("promote", {"model_name": settings.model_name})
    airflow_get(
        f"{api}/dagRuns/{run_id}/hitlDetails",
        headers,
        300,
        "the approval request",
        lambda body: body["hitl_details"],
        params={"response_received": False},
    )
    time.sleep(8)  # Airflow 3.3 fails an approval that lands within seconds of the task parking
    simulator = _simulate(loop["env"], 150)
    try:
        with chromium() as browser:
            _airflow_login(browser, url, loop["airflow_password"])
            browser.get(f"{url}/required_actions")
            # A row per pending request; its task id links to the task's Required Actions tab.
            link = wait_until(
                browser,
                lambda: browser.find_element(By.LINK_TEXT, "approve"),
                120,
                "the pending approval in Required Actions",
                "airflow-required-actions",
            )
            screenshot(browser, "airflow-2-required-actions")
            link.click()
            reason = wait_until(
                browser,
                lambda: browser.find_element(By.ID, "element_reason"),
                120,
                "the approval form",
                "airflow-approval-form",
            )
            assert f"v{loop['challenger']}" in browser.find_element(By.TAG_NAME, "body").text
            reason.send_keys("approved in the UI by the browser test")
            screenshot(browser, "airflow-3-approval-form")
            approve = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Approve")
            approve.click()
            run = airflow_get(
                f"{api}/dagRuns/{run_id}",
                headers,
                300,
                "the promote run to finish",
                lambda body: body["state"] in ("success", "failed"),
            )
            screenshot(browser, "airflow-4-answered")
            assert run["state"] == "success"
            assert loop["stream"].proc.poll() is None, f"the stream died:\n{loop['stream'].output()[-3000:]}"

            models = Context.build("warden-tests", settings).registry
            assert models.by_alias(registry.CHAMPION).version == loop["challenger"]
            tags = models.client.get_model_version(models.name, loop["challenger"]).tags
            assert tags[registry.TAG_DECIDED_BY] == ADMIN_USER
            assert tags[registry.TAG_REASON] == "approved in the UI by the browser test"

            browser.get(settings.dashboard_url)
            wait_until(
                browser,
                lambda: f"champion: v{loop['challenger']}" in _text(browser, "#champion-badge"),
                60,
                "the new champion on the dashboard",
                "dashboard-swap",
            )
            marker = wait_until(
                browser,
                lambda: [
                    m
                    for m in browser.find_elements(By.CSS_SELECTOR, "#chart-rates text.marker-label.swap")
                    if m.text == f"v{loop['challenger']}"
                ],
                120,
                "the swap marker",
                "dashboard-swap",
            )
            assert marker
            wait_until(
                browser,
                lambda: f"scoring: v{loop['challenger']}" in _text(browser, "#champion-badge"),
                120,
                "a batch scored by the new champion",
                "dashboard-swap",
            )
            assert f"swapped to v{loop['challenger']}" in _text(browser, "#model-events")
            screenshot(browser, "dashboard-after-swap")
            assert console_errors(browser) == []
    finally:
        simulator.terminate()  # it has done its part
        simulator.wait(60)


def test_the_mlflow_ui_shows_the_champion_alias(loop: dict) -> None:
    settings: Settings = loop["settings"]
    with chromium() as browser:
        # The UI is behind MLflow's basic-auth app: the browser sends the login with every request.
        import base64

        login = base64.b64encode(f"{settings.mlflow_username}:{mlflow_password(settings)}".encode()).decode()
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {login}"}})
        browser.get(f"{settings.mlflow_tracking_uri}/#/models/{settings.model_name}")
        wait_until(
            browser,
            lambda: "champion" in browser.find_element(By.TAG_NAME, "body").text,
            90,
            "the champion alias in the MLflow UI",
            "mlflow-model",
        )
        body = browser.find_element(By.TAG_NAME, "body").text
        assert settings.model_name in body
        screenshot(browser, "mlflow-registered-model")
