"""The dashboard's feeds on the files the stream writes: tailing, restarts, rates."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from infra.dashboard.feeds import RATE_WINDOW_S, LinesTail, StreamFeed
from infra.settings import load_settings
from streaming.drivers import Driver
from streaming.metrics import metrics_file, model_events_file, takeovers_file
from tests.conftest import free_port


def _append(path: Path, *records: dict, partial: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write("".join(json.dumps(r) + "\n" for r in records) + partial)


def test_a_line_being_written_is_read_once_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    tail = LinesTail(path)
    assert tail.read() == ([], False)
    _append(path, {"n": 1}, partial='{"n": ')
    assert tail.read() == ([b'{"n": 1}'], False)
    _append(path, partial="2}\n")
    assert tail.read() == ([b'{"n": 2}'], False)
    assert tail.read() == ([], False)


def test_a_replaced_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    tail = LinesTail(path)
    _append(path, {"n": 1}, {"n": 2})
    assert len(tail.read()[0]) == 2
    path.unlink()
    _append(path, {"n": 3})
    assert tail.read() == ([b'{"n": 3}'], True)


def test_the_stream_panel_adds_up_batches_and_starts_over_with_a_new_query(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, metrics_port=free_port())  # no driver renews its record: no stream runs
    feed = StreamFeed(settings)
    now = time.time()
    batch = {
        "input_rows": 100,
        "scored_rows": 98,
        "alerts": 2,
        "dead_letters": {"invalid_json": 2},
        "consumer_lag_records": 40.0,
        "batch_duration_ms": 4_000,
        "lag_by_partition": {"0": 40, "1": 0},
        "latency_ms": {"p50": 1500.0},
        "model_name": "m",
        "model_version": "3",
    }
    _append(
        metrics_file(settings),
        {**batch, "batch_id": 0, "finished_at": now - RATE_WINDOW_S - 5},
        {**batch, "batch_id": 1, "finished_at": now - 2},
    )
    _append(model_events_file(settings), {"at": now - 1, "kind": "swap", "version": "3", "previous": "2", "reason": ""})
    feed.poll()
    panel = feed.panel()
    assert panel["state"] == "stopped" and "`warden stream`" in panel["message"]
    assert panel["totals"] == {"input": 200, "scored": 196, "alerts": 4}
    assert panel["dead_letters"] == {"invalid_json": 4}
    assert panel["now"]["in_per_s"] == 100 / RATE_WINDOW_S, "only the batch inside the window counts"
    assert panel["series"][1]["scored_per_s"] == 98 / 4
    assert panel["lag_by_partition"] == {"0": 40, "1": 0}
    assert panel["model"] == {"name": "m", "version": "3"}
    assert [m["version"] for m in panel["markers"]] == ["3"]

    metrics_file(settings).unlink()  # a fresh query (the bench, a purge) starts a new file
    _append(metrics_file(settings), {**batch, "batch_id": 0, "finished_at": now})
    feed.poll()
    assert feed.panel()["totals"]["input"] == 100


def test_the_scored_rate_of_a_batch_is_its_own_not_diluted_by_the_wait_before_it(tmp_path: Path) -> None:
    # The demo's pattern: a first batch of 200,000 events (nothing before it to measure from), then,
    # after the stream idled ten minutes, a burst of 10,000 that Spark read at 100,000/s.
    settings = load_settings(home=tmp_path, metrics_port=free_port())
    now = time.time()
    _append(
        metrics_file(settings),
        {"batch_id": 0, "scored_rows": 200_000, "batch_duration_ms": 20_000, "finished_at": now - 600},
        {
            "batch_id": 1,
            "scored_rows": 10_000,
            "batch_duration_ms": 2_000,
            "input_rows_per_second": 100_000.0,
            "finished_at": now,
        },
    )
    feed = StreamFeed(settings)
    feed.poll()
    assert [point["scored_per_s"] for point in feed.panel()["series"]] == [10_000.0, 5_000.0]


def test_takeovers_are_marks_on_the_time_axis_and_the_drivers_are_listed(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, metrics_port=free_port())
    now = time.time()
    _append(
        model_events_file(settings), {"at": now - 30, "kind": "swap", "version": "3", "previous": "2", "reason": ""}
    )
    _append(
        takeovers_file(settings),
        {"at": now - 60, "kind": "takeover", "driver": 2, "previous": 1, "cause": "exited", "seconds": 2.5},
        {"at": now - 10, "kind": "takeover", "driver": 1, "previous": 2, "cause": "unresponsive", "seconds": 12.0},
    )
    feed = StreamFeed(settings)
    with Driver(settings):  # this process, as a driver building its session
        feed.poll()
        panel = feed.panel()
    assert [(m["kind"], m.get("previous")) for m in panel["markers"]] == [
        ("takeover", 1),
        ("swap", "2"),
        ("takeover", 2),
    ]
    assert panel["takeovers"] == 2
    assert [(d["pid"], d["role"]) for d in panel["drivers"]] == [(os.getpid(), "starting")]
