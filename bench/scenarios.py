"""The benchmark's scenarios, each a function of a system (bench/systems.py) returning plain data.

Definitions (the same for every system):
- backlog throughput: rows after the first batch / wall time from the end of the first batch
  to the end of the last one, on a pre-loaded backlog read from the earliest offset (all of it,
  or as much as the system reads in `max_seconds`);
- sustained: after a 10 s warm-up load, the simulator offers a fixed rate for a while; the
  system kept up if it had processed every event offered within `grace` seconds of the load
  stopping, or two of its median batch durations if that is longer (a system that falls behind
  keeps a growing lag, and needs about deficit × duration to drain it); the rate rises in steps;
- latency: after the same warm-up (a fresh process's first batches are not what its users
  see), a consumer outside the system reads its alert topic and takes arrival time minus the
  event's `ts`, 0–0.1 s before the event was produced (the simulator sends each 0.1 s slot of
  readings at its end): overstated by 50 ms on average, never understated;
- recovery: SIGKILL of the streaming driver's process group under load, restart from the
  checkpoint; the time from the kill to the first batch committed again, then exact counts;
- fixed cost (streamwarden): bursts of ~1,000 events sent to an idle job one at a time; the
  median duration of the batches that held about one burst, and of each phase of its clock;
  beside it, in the same run, the Spark floor (bench/spark_floor.py): the same bursts read from
  Kafka as the job reads them and only counted, or appended raw to Parquet or to Delta.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

import cpu_profile
import spark_stages
from infra.context import Context
from infra.lake import Lake
from infra.progress import ProgressLine
from infra.settings import Settings
from infra.waiting import wait_until
from streaming.kafka_io import end_offsets
from streaming.simulation import SimulationParams, simulate
from systems import Batch, Running, Streamwarden, System

WARMUP_SECONDS = 10.0  # a short load before each measured one: JIT, Python workers, model and caches warm


def wait_for(condition: Callable[[], bool], timeout: float, running: Running, what: str) -> None:
    def ready() -> bool:
        if condition():
            return True
        running.check_alive()
        return False

    if not wait_until(ready, timeout=timeout, interval=0.5):
        raise SystemExit(f"error: {running.system.name}: timed out after {timeout:.0f} s waiting for {what}")


def wait_drained(running: Running, since: float, offered: int, timeout: float) -> float | None:
    """Wait until the batches that ended after `since` hold at least the `offered` events; the
    end time of the last of them, or None if that did not happen within `timeout`.

    Counting rows, not waiting for quiet: a system busy with one long batch reports nothing
    until it ends, and would look idle."""

    def drained() -> float | None:
        running.check_alive()
        done = [b for b in running.batches() if b.end >= since and b.rows]
        return max(b.end for b in done) if sum(b.rows for b in done) >= offered else None

    return wait_until(drained, done=lambda end: end is not None, timeout=timeout, interval=0.5)


def offer(ctx: Context, rate: float, seconds: float, devices: int, label: str) -> int:
    """The simulator at a fixed rate, into the context's topic and lake: the events it produced."""
    params = SimulationParams(devices=devices, rate=rate, duration=seconds)
    report = simulate(ctx, params, ProgressLine(label))
    return report.events


def warm_up(running: Running, ctx: Context, rate: float, devices: int) -> None:
    """Offer a short load and wait until it is processed, so that the measured load meets a warm
    system (as in production), not the first batches of a fresh process."""
    since = time.time()
    offered = offer(ctx, rate, WARMUP_SECONDS, devices, f"{running.system.name} warm-up at {rate:,.0f}/s")
    if wait_drained(running, since, offered, timeout=600) is None:
        raise SystemExit(f"error: {running.system.name} did not process its {offered:,}-event warm-up in 600 s")


def backlog_throughput(system: System, events: int, max_seconds: float) -> dict:
    """Read the backlog from the start, until all of it or `max_seconds` of processing (a slow
    system needs no hour to show its rate)."""
    running = system.start("earliest")
    progress = ProgressLine(f"{system.name} backlog")
    try:

        def done() -> bool:
            batches = [b for b in running.batches() if b.rows]
            rows = sum(b.rows for b in batches)
            progress.update(f"{rows:,}/{events:,} events")
            return rows >= events or bool(batches) and batches[-1].end - batches[0].end > max_seconds

        wait_for(done, 3600, running, f"{events:,} events")
    finally:
        running.stop()
    batches = [b for b in running.batches() if b.rows]
    steady = batches[1:]
    seconds = steady[-1].end - batches[0].end if steady else 0.0
    rows = sum(b.rows for b in steady)
    per_minute = rows / seconds * 60 if seconds > 0 else 0.0
    progress.done(f"{per_minute:,.0f} events/min ({rows:,} events after the first batch in {seconds:.1f} s)")
    return {"events_per_minute": per_minute, "batches": len(batches), "rows": rows, "seconds": seconds}


def sustained(system: System, ctx: Context, start_rate: float, seconds: float, steps: int, devices: int) -> dict:
    """Raise the offered rate by 25 % a step until the system falls behind."""
    grace = max(10.0, 0.15 * seconds)
    running = system.start("latest")
    trials = []
    try:
        wait_for(system.started, 300, running, "the system to start")
        warm_up(running, ctx, start_rate, devices)
        rate = start_rate
        for _ in range(steps):
            load_start = time.time()
            offered = offer(ctx, rate, seconds, devices, f"{system.name} offered {rate:,.0f}/s")
            load_end = time.time()
            drained = wait_drained(running, load_start, offered, timeout=max(600.0, 3 * seconds))
            during = [b for b in running.batches() if b.end >= load_start]
            processed = sum(b.rows for b in during)
            # A system that keeps up still ends its last batch after the load: allow two batches.
            allowed = max(grace, 2 * statistics.median([b.seconds for b in during] or [0.0]))
            behind = max(0.0, drained - load_end) if drained is not None else float("inf")
            kept_up = behind <= allowed
            trials.append(
                {
                    "offered_per_second": rate,
                    "events": offered,
                    "processed": processed,
                    "drained_after_s": behind,
                    "allowed_s": allowed,
                    "kept_up": kept_up,
                }
            )
            if not kept_up:
                break
            rate *= 1.25
    finally:
        running.stop()
    kept = [t["offered_per_second"] for t in trials if t["kept_up"]]
    return {"max_sustained_per_second": max(kept, default=0.0), "grace_s": grace, "trials": trials}


class AlertClock:
    """Reads a system's alert topic from its current end, as the alert's users do
    (read_committed), and keeps arrival time minus event time of every alert."""

    def __init__(self, bench: Settings, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bench.kafka.bootstrap,
                "group.id": f"bench-clock-{time.monotonic_ns()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        ends = end_offsets(bench, topic).by_partition
        self.consumer.assign([TopicPartition(topic, p, offset) for p, offset in ends.items()])
        self.latencies_ms: list[float] = []
        self.event_ids: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> AlertClock:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self.consumer.consume(1000, timeout=0.2):
                arrived = time.time()
                if message.error() is None:
                    alert = orjson.loads(message.value())
                    self.event_ids.append(alert["event_id"])
                    self.latencies_ms.append((arrived - datetime.fromisoformat(alert["event_ts"]).timestamp()) * 1000)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": cuts[94], "p99": cuts[98]}


def latency(
    system: System, ctx: Context, rate: float, seconds: float, devices: int, profile_to: Path | None = None
) -> dict:
    """Alert latency at `rate`; with `profile_to`, py-spy samples the system during the load and,
    for streamwarden, Spark logs its events (bench/spark_stages.py)."""
    spark_log = ctx.settings.home / "spark-events" if profile_to and isinstance(system, Streamwarden) else None
    running = system.start("latest", env=spark_stages.event_log_env(spark_log) if spark_log else None)
    profile: dict = {}
    stages: dict = {}
    try:
        wait_for(system.started, 300, running, "the system to start")
        warm_up(running, ctx, rate, devices)
        with AlertClock(ctx.settings, system.alerts_topic) as clock:
            since = time.time()
            recorder = cpu_profile.start(running.proc.pid, seconds, profile_to) if profile_to else None
            offered = offer(ctx, rate, seconds, devices, f"{system.name} latency at {rate:,.0f}/s")
            if profile_to:
                profile = cpu_profile.finish(recorder, profile_to)
            if wait_drained(running, since, offered, timeout=600) is None:
                raise SystemExit(
                    f"error: {system.name} did not process the {offered:,} events offered at {rate:,.0f}/s in 600 s"
                )
            time.sleep(2)  # the last alerts' transaction
        measured = [b for b in running.batches() if b.end >= since and b.rows]
    finally:
        running.stop()  # a stopped driver has closed its event log
    if spark_log:
        stages = spark_stages.summarize(spark_log, since)
    return {
        "offered_per_second": rate,
        "alerts": len(clock.latencies_ms),
        **_percentiles(clock.latencies_ms),
        "batches": batch_profile(measured),
        **({"profile": profile} if profile else {}),
        **({"spark_stages": stages} if stages else {}),
    }


def batch_profile(batches: list[Batch]) -> dict:
    """The measured load's batches: how many, their median size and duration and, where the system
    times them (streamwarden), the median of each phase; what a batch does besides its phases
    (planning, offsets, the checkpoint's commit) is the median duration minus their sum."""
    if not batches:
        return {"count": 0}
    phases = sorted({phase for b in batches for phase in b.phases_ms})
    return {
        "count": len(batches),
        "rows": statistics.median(b.rows for b in batches),
        "seconds": statistics.median(b.seconds for b in batches),
        "phases_ms": {phase: statistics.median(b.phases_ms.get(phase, 0.0) for b in batches) for phase in phases},
    }


def fixed_cost(
    system: Streamwarden, ctx: Context, devices: int, bursts: int = 12, events: int = 1000, spark_log: bool = False
) -> dict:
    """What a batch costs besides its rows: bursts of `events` sent to an otherwise idle job, one
    at a time, and the median duration (and phase clock) of the batches that held about one burst;
    with `spark_log`, also Spark's account of those batches (bench/spark_stages.py)."""
    log_folder = ctx.settings.home / "spark-events-fixed-cost" if spark_log else None
    running = system.start("latest", env=spark_stages.event_log_env(log_folder) if log_folder else None)
    try:
        wait_for(system.started, 300, running, "the system to start")
        warm_up(running, ctx, 500.0, devices)
        since = time.time()
        for n in range(bursts):
            sent = time.time()
            params = SimulationParams(devices=devices, rate=50 * events, events=events)
            burst = ProgressLine(f"{system.name} fixed cost, burst {n + 1}/{bursts}")
            offered = simulate(ctx, params, burst).events
            if wait_drained(running, sent, offered, timeout=300) is None:
                raise SystemExit(f"error: {system.name} did not process a {offered:,}-event burst in 300 s")
            time.sleep(1.0)  # idle between bursts: each one meets a job with nothing else to do
        sized = [b for b in running.batches() if b.end >= since and 0.5 * events <= b.rows <= 1.5 * events]
    finally:
        running.stop()  # a stopped driver has closed its event log
    stages = spark_stages.summarize(log_folder, since) if log_folder else {}
    return {
        "events_per_burst": events,
        "bursts": bursts,
        **batch_profile(sized),
        **({"spark_stages": stages} if stages else {}),
    }


def spark_floor(bench: Settings, devices: int, bursts: int = 12, events: int = 1000) -> dict:
    """What the same bursts cost a Spark micro-batch that does none of the job's work: the median
    batch duration of each body of bench/spark_floor.py, run as a process of its own."""
    command = [sys.executable, str(Path(__file__).with_name("spark_floor.py"))]
    command += ["--bursts", str(bursts), "--events", str(events), "--devices", str(devices)]
    done = subprocess.run(command, env={**os.environ, **bench.to_env()}, stdout=subprocess.PIPE, check=False)  # noqa: S603
    if done.returncode:
        raise SystemExit(f"error: bench/spark_floor.py failed with exit code {done.returncode}")
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def recovery(bench: Settings, number: int, rate: float, seconds: float, devices: int) -> dict:
    """Kill `warden stream` a third of the way into a load, restart it, and count what landed."""
    scratch = bench.updated(
        **{
            "lake_root": str(bench.home / f"recovery-{number}" / "lake"),
            "topic_telemetry": f"{bench.topic.telemetry}_recovery_{number}",
        }
    )
    ctx = Context.build("warden-bench-recovery", scratch)
    lake = ctx.lake  # built here, not in the load's thread
    system = Streamwarden(scratch)
    running = system.start("latest")
    restarted: Running | None = None
    offered: list[int] = []
    try:
        wait_for(system.started, 300, running, "the stream to start")
        load = threading.Thread(target=lambda: offered.append(offer(ctx, rate, seconds, devices, f"recovery {number}")))
        with AlertClock(scratch, system.alerts_topic) as clock:
            load.start()
            wait_for(lambda: any(b.rows for b in running.batches()), 300, running, "a first batch under load")
            time.sleep(seconds / 3)
            running.kill()
            killed = time.time()
            restarted = system.start("latest", fresh=False)
            wait_for(
                lambda: any(b.rows and b.end > killed for b in restarted.batches()),
                300,
                restarted,
                "a batch after the restart",
            )
            back = min(b.end for b in restarted.batches() if b.rows and b.end > killed)
            load.join()
            # Both processes write one batch file: everything offered, counted once or more.
            if wait_drained(restarted, 0.0, offered[0], timeout=900) is None:
                raise SystemExit(f"error: the restarted stream did not catch up with recovery load {number} in 900 s")
            time.sleep(3)
            restarted.stop()
        alert_ids = clock.event_ids
    finally:
        for process in (running, restarted):
            if process is not None:
                process.kill()
    return {"offered": offered[0], "recovery_s": back - killed, **exactly_once(lake, offered[0], alert_ids)}


def exactly_once(lake: Lake, offered: int, alert_ids: list[str]) -> dict:
    """The lake's `scored` rows against the events offered (lost, duplicated), and the alerts
    delivered (their event ids) against the scored rows flagged as alerts."""
    scored = lake.read_table("scored", ["event_id", "is_alert"])
    event_ids = scored.column("event_id").to_pylist()
    flagged = {e for e, alert in zip(event_ids, scored.column("is_alert").to_pylist(), strict=True) if alert}
    return {
        "scored_rows": len(event_ids),
        "lost": offered - len(set(event_ids)),
        "duplicated_scored": len(event_ids) - len(set(event_ids)),
        "alerts": len(alert_ids),
        "duplicated_alerts": len(alert_ids) - len(set(alert_ids)),
        "alerts_match_scored": set(alert_ids) == flagged,
    }
