"""A warm standby beside the stream's driver: it takes the query over when the active driver is
SIGKILLed or hangs, with nothing lost or duplicated, and two drivers never run the query at once.

The tests run in order on one pair of drivers: each kill leaves the other one active, and the
killed one comes back as the standby, as an operator (or `warden up`) would start it again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from infra.lake import Lake
from infra.settings import Settings
from infra.stack.kafka import KafkaBroker
from streaming.drivers import read_drivers
from streaming.kafka_io import committed_records
from streaming.metrics import batch_records, read_takeovers
from streaming.rehearsal import REHEARSALS
from tests.conftest import DEVICES, Trained, WardenProcess, run_warden, settings_for, stream_env
from tests.streaming.checks import scored, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEASE_SECONDS = 4
BURST = 4000  # events a round, at BURST_RATE a second: the kill lands in the middle of it
BURST_RATE = 1000
MALFORMED = [b"not json at all", b'{"event_id":"standby-m1","device_id":"dev-00001"}']


@pytest.fixture(scope="module")
def env(trained: Trained, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return stream_env(
        trained,
        settings,
        tmp_path_factory.mktemp("standby-home"),
        "standby_test",
        {"WARDEN_STREAM_LEASE_SECONDS": str(LEASE_SECONDS), "WARDEN_STREAM_MAX_OFFSETS_PER_TRIGGER": "3000"},
    )


class Drivers:
    """The module's `warden stream` processes and the events offered to them so far."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.settings = settings_for(env)
        self.logs = logs
        self.processes: dict[int, WardenProcess] = {}
        self.offered = 0
        self.rounds = 0

    def start(self, *args: str) -> WardenProcess:
        process = WardenProcess(self.env, self.logs / f"driver-{len(self.processes)}.log", "stream", *args)
        self.processes[process.proc.pid] = process
        return process

    def role_of(self, process: WardenProcess) -> str | None:
        return next((d.role for d in read_drivers(self.settings) if d.pid == process.proc.pid), None)

    def active(self) -> WardenProcess:
        record = next(d for d in read_drivers(self.settings) if d.role == "active")
        return self.processes[record.pid]

    def load(self, events: int = BURST) -> WardenProcess:
        """A burst of simulated telemetry at BURST_RATE, produced in the background."""
        self.rounds += 1
        self.offered += events
        return WardenProcess(
            self.env,
            self.logs / f"load-{self.rounds}.log",
            "simulate",
            *(
                "--devices",
                str(DEVICES),
                "--events",
                str(events),
                "--rate",
                str(BURST_RATE),
                "--seed",
                str(self.rounds),
            ),
        )


@pytest.fixture(scope="module")
def drivers(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drivers]:
    pair = Drivers(env, tmp_path_factory.mktemp("standby-logs"))
    yield pair
    for process in pair.processes.values():
        if process.proc.poll() is None:
            process.kill()


def test_two_drivers_never_run_the_query_at_once(drivers: Drivers) -> None:
    settings = drivers.settings
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "enable.idempotence": True})
    for value in MALFORMED:
        producer.produce(settings.topic.telemetry, value, b"dev-00001")
    assert producer.flush(30) == 0
    first = drivers.start()
    load = drivers.load()
    wait_for(lambda: len(scored(settings)) >= BURST, 300, "the first burst scored", first)
    assert load.proc.wait(60) == 0, load.output()
    second = drivers.start("--standby")
    wait_for(lambda: drivers.role_of(second) == "standby", 300, "the standby ready", second)
    assert drivers.role_of(first) == "active"

    # A third driver on the same checkpoint is refused, in one line naming the one that runs.
    refused = run_warden(drivers.env, "stream", "--duration", "5", timeout=300)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"is held by pid {first.proc.pid} (active" in refused.stderr
    assert "--standby" in refused.stderr
    # The standby waits: it never ran a batch.
    assert {record.driver for record in batch_records(settings)} == {first.proc.pid}
    assert f"waiting to take over from driver pid {first.proc.pid}" in second.output()
    # It rehearsed a batch's two paths, the scored events and the dead letters.
    assert f"rehearsal {REHEARSALS}/{REHEARSALS}: the topic's newest events scored" in second.output()
    assert "rehearsal of dead letters: records that are no events written to a scratch table" in second.output()


def test_a_standby_takes_over_each_sigkill_with_nothing_lost_or_duplicated(drivers: Drivers) -> None:
    settings = drivers.settings
    for kill in (1, 2, 3):
        active = drivers.active()
        standby = next(p for p in drivers.processes.values() if drivers.role_of(p) == "standby")
        before = len(scored(settings))
        load = drivers.load()
        wait_for(lambda before=before: len(scored(settings)) > before, 120, "a batch of the burst", active)
        active.kill()  # the Python driver and its JVM, as a crash would
        wait_for(lambda kill=kill: len(read_takeovers(settings)) == kill, 120, f"takeover {kill}", standby)
        takeover = read_takeovers(settings)[-1]
        assert (takeover["previous"], takeover["driver"], takeover["cause"]) == (
            active.proc.pid,
            standby.proc.pid,
            "exited",
        )
        assert load.proc.wait(120) == 0, load.output()
        # The killed driver comes back as the standby: the next kill hits the other one.
        comeback = drivers.start("--standby")
        wait_for(lambda comeback=comeback: drivers.role_of(comeback) == "standby", 300, "the new standby", comeback)

    wait_for(lambda: len(scored(settings)) >= drivers.offered, 300, f"all {drivers.offered:,} events scored")
    _assert_exactly_once(drivers)
    # The active driver's Prometheus endpoint counts every takeover, its own and the earlier ones.
    metrics = requests.get(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=10).text
    samples = {s.name: s.value for f in text_string_to_metric_families(metrics) for s in f.samples}
    assert samples["warden_stream_takeovers_total"] == 3
    assert samples["warden_stream_last_takeover_timestamp_seconds"] == pytest.approx(read_takeovers(settings)[-1]["at"])
    status = run_warden(drivers.env, "status", "--no-settings", timeout=120)
    assert "active since" in status.stdout and "standby since" in status.stdout, status.stdout
    assert "takeovers: 3, the last at" in status.stdout, status.stdout


def test_a_hung_driver_is_fenced_and_never_commits_after_the_takeover(drivers: Drivers) -> None:
    settings = drivers.settings
    hung = drivers.active()
    standby = next(p for p in drivers.processes.values() if drivers.role_of(p) == "standby")
    before = len(scored(settings))
    load = drivers.load()
    wait_for(lambda: len(scored(settings)) > before, 120, "a batch of the burst", hung)
    os.killpg(hung.proc.pid, signal.SIGSTOP)  # alive, holding its lock, silent
    wait_for(lambda: len(read_takeovers(settings)) == 4, 120, "the takeover from the hung driver", standby)
    os.killpg(hung.proc.pid, signal.SIGCONT)  # too late: it was fenced
    assert hung.proc.wait(30) == -signal.SIGKILL
    takeover = read_takeovers(settings)[-1]
    assert (takeover["previous"], takeover["cause"], takeover["driver"]) == (
        hung.proc.pid,
        "unresponsive",
        standby.proc.pid,
    )
    assert takeover["fenced"] >= 2  # the Python driver and its JVM
    assert load.proc.wait(120) == 0, load.output()
    wait_for(lambda: len(scored(settings)) >= drivers.offered, 300, f"all {drivers.offered:,} events scored", standby)
    time.sleep(3)  # a write from the hung driver would land now
    _assert_exactly_once(drivers)
    late = [r for r in batch_records(settings) if r.driver == hung.proc.pid and (r.finished_at or 0) > takeover["at"]]
    assert late == []


def test_the_stream_rides_out_a_broker_killed_and_started_again(drivers: Drivers, kafka: Settings) -> None:
    settings = drivers.settings
    active = drivers.active()
    before = len(scored(settings))
    load = drivers.load(events=8000)
    wait_for(lambda: len(scored(settings)) > before, 120, "a batch of the burst", active)
    broker = KafkaBroker(kafka)
    pid = broker.process.pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    time.sleep(2)
    up = run_warden({}, "up", "--service", "kafka", timeout=300)  # the session's stack, as its user restarts it
    assert up.returncode == 0, up.stdout + up.stderr
    assert load.proc.wait(180) == 0, load.output()  # the producer waited for the broker
    wait_for(lambda: len(scored(settings)) >= drivers.offered, 300, f"all {drivers.offered:,} events scored", active)
    time.sleep(3)
    _assert_exactly_once(drivers)
    # The job rode it out: the same driver runs the query, and nothing was taken over.
    assert active.proc.poll() is None and drivers.active() is active
    assert len(read_takeovers(settings)) == 4


def _assert_exactly_once(drivers: Drivers) -> None:
    settings = drivers.settings
    rows = scored(settings)
    assert len(rows) == drivers.offered, f"{len(rows)} scored rows for {drivers.offered} events offered"
    assert rows["event_id"].is_unique
    alerts = [orjson.loads(value)["event_id"] for _, value, _ in committed_records(settings, settings.topic.alerts)]
    assert len(alerts) == len(set(alerts)), "an alert was delivered twice"
    assert set(alerts) == set(rows.loc[rows["is_alert"], "event_id"])
    letters = sorted(value for _, value, _ in committed_records(settings, settings.topic.dlq))
    assert letters == sorted(MALFORMED)
    # The standbys' rehearsals wrote their records that are no events to scratch tables only.
    assert sorted(Lake(settings).read_table("rejected", ["value"]).to_pydict()["value"]) == sorted(MALFORMED)


def test_warden_up_runs_a_driver_and_its_standby_and_starts_again_the_one_that_died(drivers: Drivers) -> None:
    running = [p for p in drivers.processes.values() if p.proc.poll() is None]
    for process in sorted(running, key=lambda p: drivers.role_of(p) == "active"):  # the standby first
        os.kill(process.proc.pid, signal.SIGTERM)
        assert process.proc.wait(180) == 0, process.output()[-2000:]
    env = {**drivers.env, "WARDEN_STREAM_STANDBY": "true"}
    up = run_warden(env, "up", "--service", "stream", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        wait_for(lambda: sorted(d.role for d in read_drivers(drivers.settings)) == ["active", "standby"], 300, "roles")
        active = next(d for d in read_drivers(drivers.settings) if d.role == "active")
        os.killpg(active.pid, signal.SIGKILL)
        wait_for(lambda: [d.role for d in read_drivers(drivers.settings)] == ["active"], 120, "the takeover")
        again = run_warden(env, "up", "--service", "stream", timeout=600)  # the dead slot, as the new standby
        assert again.returncode == 0, again.stdout + again.stderr
        wait_for(lambda: sorted(d.role for d in read_drivers(drivers.settings)) == ["active", "standby"], 300, "roles")
        status = run_warden(env, "status", "--no-settings", timeout=120)
        assert "active since" in status.stdout and "standby since" in status.stdout, status.stdout
    finally:
        down = run_warden(env, "down", "--service", "stream", timeout=600)
    assert down.returncode == 0 and "stream" in down.stdout, down.stdout + down.stderr
    assert read_drivers(drivers.settings) == []
