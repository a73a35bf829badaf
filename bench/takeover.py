"""The takeover scenario: `warden stream` with a warm standby under a steady load, its active
driver SIGKILLed again and again and its broker once, and what landed counted exactly.

Once the active driver has caught up with the load, the standby starts (and rehearses with the
devices the query met). Per kill, once the active driver has caught up again and the standby is
ready: SIGKILL to the active driver's process group (the Python driver and its JVM); the time
from the kill to the first batch that the standby committed (each batch record names the driver
that wrote it); then the killed driver started again, as the new standby: the next kill hits the
other one.
Half-way, the broker is SIGKILLed and started again by `warden up --service kafka` while the
load and both drivers run; the time from its kill to the next batch with events.

At the end, exact counts: the events offered against the distinct `event_id`s in `scored/`
(lost) and its rows against them (duplicated); alerts and dead letters as read_committed
consumers read them, against the scored rows flagged as alerts and the malformed records sent
(one before each kill).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
from confluent_kafka import Producer

from infra.context import Context
from infra.lake import Lake
from infra.logs import KAFKA_CLIENT_LOG
from infra.progress import ProgressLine
from infra.settings import Settings
from infra.stack.kafka import KafkaBroker
from infra.waiting import wait_until
from scenarios import exactly_once, wait_for
from streaming.drivers import read_drivers
from streaming.kafka_io import committed_records
from streaming.metrics import BatchRecord, batch_records, read_takeovers
from streaming.simulation import SimulationParams, simulate
from systems import Running, Streamwarden

WARMUP_SECONDS = 30.0
# The load goes on until the last kill's takeover is measured, and this long after it.
TAIL_SECONDS = 30.0
# A bound on the load, in case the scenario fails before it stops it.
MAX_SECONDS_PER_KILL = 600.0


def takeovers(settings: Settings, bench: Settings, rate: float, kills: int, devices: int, topics: list[str]) -> dict:
    """`kills` SIGKILLs of the active driver and one broker bounce under `rate` events/s; the
    topics it creates are added to `topics`."""
    system = Streamwarden(_takeover_settings(bench))
    scratch = system.settings  # with the system's own alert and dead-letter topics
    topics += [scratch.topic.telemetry, scratch.topic.alerts, scratch.topic.dlq]
    ctx = Context.build("warden-bench-takeover", scratch)
    lake = ctx.lake  # the scenario's own lake
    progress = ProgressLine("takeover")
    drivers: dict[int, Running] = {}
    first = system.start("latest")
    drivers[first.proc.pid] = first
    offered: list[int] = []
    malformed: list[bytes] = []
    kills_measured: list[dict] = []
    bounce: dict = {}
    load_done = threading.Event()
    try:
        wait_for(system.started, 300, first, "the stream to start")
        seconds = kills * MAX_SECONDS_PER_KILL + WARMUP_SECONDS + TAIL_SECONDS
        load = threading.Thread(
            target=lambda: offered.append(
                simulate(
                    ctx,
                    SimulationParams(devices=devices, rate=rate, duration=seconds, seed=23),
                    ProgressLine("takeover load"),
                    stop=load_done,
                ).events
            ),
            daemon=True,
        )
        load.start()
        # A warm system, as in production: the active driver caught up with the load, then the
        # standby started (it rehearses with the devices the query has met) and ready.
        time.sleep(WARMUP_SECONDS)
        wait_for(lambda: _caught_up(scratch, first.proc.pid, rate), 600, first, "the active driver to catch up")
        standby = system.start_standby(0)
        drivers[standby.proc.pid] = standby
        wait_for(lambda: _role(scratch, standby) == "standby", 300, standby, "the standby to be ready")
        wait_for(lambda: _caught_up(scratch, first.proc.pid, rate), 600, first, "the active driver to catch up")
        time.sleep(15)  # five batches or so at the steady state
        steady_rows, steady_seconds = _steady(scratch, first.proc.pid)
        producer = Producer(
            {"bootstrap.servers": scratch.kafka.bootstrap, "enable.idempotence": True, "logger": KAFKA_CLIENT_LOG}
        )
        for kill in range(1, kills + 1):
            active = drivers[_active_pid(scratch)]
            standby = next(r for pid, r in drivers.items() if pid != active.proc.pid and r.proc.poll() is None)
            wait_for(lambda standby=standby: _role(scratch, standby) == "standby", 300, standby, "the standby")
            wait_for(
                lambda active=active: _caught_up(scratch, active.proc.pid, rate, steady_rows),
                600,
                active,
                "the active driver to catch up with the load",
            )
            letter = f"takeover bench: malformed {kill}".encode()
            producer.produce(scratch.topic.telemetry, letter, b"dev-00001")
            producer.flush(30)
            malformed.append(letter)
            time.sleep(0.5)  # into its next batch
            active.kill()
            killed = time.time()
            wait_for(
                lambda killed=killed, standby=standby: _batch_after(scratch, standby.proc.pid, killed) is not None,
                300,
                standby,
                f"the standby's first batch after kill {kill}",
            )
            first_batch = _batch_after(scratch, standby.proc.pid, killed)
            if first_batch is None or first_batch.finished_at is None:  # waited for above: a bug if so
                raise SystemExit(f"error: the standby's first batch after kill {kill} is not recorded")
            took = first_batch.finished_at - killed
            record = read_takeovers(scratch)[-1]
            kills_measured.append(
                {
                    "kill": kill,
                    "seconds": took,
                    "recorded_seconds": record["seconds"],
                    "detection_seconds": record["detection_seconds"],
                    "fenced": record["fenced"],
                    # The first batch is most often the killed driver's, run again: its size is the load's.
                    "first_batch_rows": first_batch.input_rows,
                    "first_batch_seconds": first_batch.batch_duration_ms / 1000,
                    "first_batch_phases_ms": first_batch.phases_ms,
                }
            )
            progress.update(
                f"kill {kill}/{kills}: the standby committed a batch {took:.2f} s after it "
                f"({first_batch.input_rows:,} events in {first_batch.batch_duration_ms / 1000:.1f} s)"
            )
            comeback = system.start_standby(kill)
            drivers[comeback.proc.pid] = comeback
            if kill == kills // 2:
                wait_for(lambda c=comeback: _role(scratch, c) == "standby", 300, comeback, "the new standby")
                bounce = _bounce_broker(settings, scratch, progress)
        time.sleep(TAIL_SECONDS)
        load_done.set()
        load.join()
        _wait_scored(lake, offered[0])
        time.sleep(3)  # a duplicate would land now
        for running in drivers.values():
            running.stop()
    finally:
        load_done.set()
        for running in drivers.values():
            running.kill()
    alert_ids = [orjson.loads(value)["event_id"] for _, value, _ in committed_records(scratch, scratch.topic.alerts)]
    letters = [value for _, value, _ in committed_records(scratch, scratch.topic.dlq)]
    times = [k["seconds"] for k in kills_measured]
    return {
        "offered_per_second": rate,
        "steady_batch_rows": steady_rows,
        "steady_batch_seconds": steady_seconds,
        "offered": offered[0],
        "malformed": len(malformed),
        "kills": kills_measured,
        "takeover_s": {"min": min(times), "median": statistics.median(times), "max": max(times)},
        "broker_bounce": bounce,
        **exactly_once(lake, offered[0], alert_ids),
        "dead_letters": len(letters),
        "dead_letters_match": sorted(letters) == sorted(malformed),
    }


def _takeover_settings(bench: Settings) -> Settings:
    """The scenario's own lake and topics: its alerts and dead letters are counted from their
    topics' first record."""
    return bench.updated(
        **{
            "lake_root": str(bench.home / "takeover" / "lake"),
            **{f"topic_{kind}": f"{getattr(bench.topic, kind)}_takeover" for kind in ("telemetry", "alerts", "dlq")},
        }
    )


def _bounce_broker(settings: Settings, scratch: Settings, progress: ProgressLine) -> dict:
    """SIGKILL the embedded broker, start it again as a user would; how long the stream was away."""
    broker = KafkaBroker(settings)
    pid = broker.process.pid()
    if pid is None:
        raise SystemExit("error: the broker bounce needs the embedded broker (`warden up --service kafka`)")
    os.killpg(pid, 9)
    killed = time.time()
    progress.update("broker SIGKILLed; `warden up --service kafka`", force=True)
    warden = str(Path(sys.executable).with_name("warden"))
    done = subprocess.run(  # noqa: S603
        [warden, "up", "--service", "kafka"],
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"error: warden up --service kafka failed: {done.stderr.decode()[-500:]}")
    restarted = time.time()
    after = wait_until(
        lambda: [r for r in batch_records(scratch) if (r.finished_at or 0) > restarted and r.input_rows],
        timeout=600,
        interval=0.5,
    )
    if not after:
        raise SystemExit("error: the stream scored nothing in 600 s after the broker came back")
    back = min(r.finished_at or 0 for r in after)
    progress.update(f"broker back in {restarted - killed:.1f} s, the stream {back - killed:.1f} s", force=True)
    return {"broker_restart_s": restarted - killed, "stream_back_s": back - killed}


def _caught_up(settings: Settings, driver: int, rate: float, steady_rows: float | None = None) -> bool:
    """The driver's newest batch ended less than a batch ago, left at most two seconds of load
    behind it and, once the steady batch is known, it and the two before it held at most 1.5 of
    it: a kill now finds the stream in its steady state, not draining a backlog. (The lag alone
    does not tell: while the broker was away, the load waited in its producer, not in the topic,
    and came as a burst after one small batch: a kill then hit a batch of 57k events.)"""
    records = [r for r in batch_records(settings) if r.driver == driver and r.input_rows]
    if not records:
        return False
    newest = records[-1]
    recent = time.time() - (newest.finished_at or 0) < max(2 * newest.batch_duration_ms / 1000, 5)
    steady = steady_rows is None or (len(records) >= 3 and all(r.input_rows <= 1.5 * steady_rows for r in records[-3:]))
    return recent and steady and newest.consumer_lag_records <= 2 * rate


def _steady(settings: Settings, driver: int) -> tuple[float, float]:
    """The median size and duration (s) of the driver's last five batches: its steady batch."""
    records = [r for r in batch_records(settings) if r.driver == driver and r.input_rows][-5:]
    return (
        float(statistics.median(r.input_rows for r in records)),
        float(statistics.median(r.batch_duration_ms for r in records)) / 1000,
    )


def _role(settings: Settings, running: Running) -> str | None:
    return next((d.role for d in read_drivers(settings) if d.pid == running.proc.pid), None)


def _active_pid(settings: Settings) -> int:
    return next(d.pid for d in read_drivers(settings) if d.role == "active")


def _batch_after(settings: Settings, driver: int, since: float) -> BatchRecord | None:
    """The record of the first batch that `driver` committed after `since`, if any."""
    after = [r for r in batch_records(settings) if r.driver == driver and (r.finished_at or 0) > since]
    return min(after, key=lambda r: r.finished_at or 0) if after else None


def _wait_scored(lake: Lake, offered: int) -> None:
    if not wait_until(lambda: len(lake.read_table("scored", ["event_id"])) >= offered, timeout=900, interval=5):
        raise SystemExit(f"error: {offered:,} events not all scored 900 s after the load ended")
