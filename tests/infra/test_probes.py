"""Health probes tell a slow service from a down one, against real servers on 127.0.0.1: a late
answer is asked for once more with more patience, a service late both times is slow, a closed port
is down, and `warden status` exits non-zero only for a service that is down."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.probes import PROBE_TIMEOUTS, State, http_health
from tests.conftest import free_port, run_warden


class _LateServer(ThreadingHTTPServer):
    """Answers every GET with HTTP 200, `delay` seconds after it came in; counts the requests."""

    def __init__(self, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _LateHandler)
        self.delay = delay
        self.requests = 0
        self.closing = threading.Event()  # set on teardown: a handler still waiting answers at once

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the probe gave up on this answer and closed the connection: that is the point


class _LateHandler(BaseHTTPRequestHandler):
    server: _LateServer

    def do_GET(self) -> None:
        self.server.requests += 1
        self.server.closing.wait(self.server.delay)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def late_server(request: pytest.FixtureRequest) -> Iterator[_LateServer]:
    server = _LateServer(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.closing.set()
    server.shutdown()
    server.server_close()


def _url(server: _LateServer) -> str:
    return f"http://127.0.0.1:{server.server_port}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("late_server", [PROBE_TIMEOUTS[0] + 1.5], indirect=True)
def test_an_answer_later_than_the_first_timeout_is_waited_for(late_server: _LateServer) -> None:
    health = http_health(f"{_url(late_server)}/health")
    assert health.state is State.UP, health
    assert late_server.requests == 2, "the late first request was asked again, once"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("late_server", [PROBE_TIMEOUTS[-1] + 20], indirect=True)
def test_a_service_late_twice_is_slow_not_down(late_server: _LateServer) -> None:
    health = http_health(f"{_url(late_server)}/health")
    assert health.state is State.SLOW, health
    assert not health.ok
    assert late_server.requests == 2, "one retry, not more"


def test_a_closed_port_is_down() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    health = http_health(url)
    assert health.state is State.DOWN
    assert url in health.detail


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes TCP connections (the kernel's backlog) and never answers on them, like a
    broker too busy to read its sockets."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("late_server", [PROBE_TIMEOUTS[-1] + 60], indirect=True)
def test_status_shows_slow_services_and_fails_only_for_a_down_one(
    late_server: _LateServer, silent_port: int, tmp_path: Path
) -> None:
    port = late_server.server_port
    env = {
        "WARDEN_HOME": str(tmp_path),
        "WARDEN_KAFKA_BOOTSTRAP": f"127.0.0.1:{silent_port}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        "WARDEN_AIRFLOW_PORT": str(port),
        "WARDEN_DASHBOARD_PORT": str(port),
    }
    result = run_warden(env, "status", "--no-settings", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()[:4]}
    assert rows == dict.fromkeys(("kafka", "mlflow", "airflow", "dashboard"), "slow"), result.stdout

    env["WARDEN_AIRFLOW_PORT"] = str(free_port())
    result = run_warden(env, "status", "--no-settings", timeout=90)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"DOWN airflow   http://127.0.0.1:{env['WARDEN_AIRFLOW_PORT']}" in result.stdout
    assert "Traceback" not in result.stderr
