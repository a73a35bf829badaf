"""The stream's metrics: Prometheus' exposition conventions, the batch records and the model
events that the dashboard reads."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infra.settings import Settings, load_settings
from streaming.drivers import Takeover
from streaming.metrics import (
    LATENCY_BUCKETS_S,
    REFUSAL,
    SWAP,
    TAKEOVER,
    BatchMetrics,
    StreamMetrics,
    batch_records,
    last_batch,
    model_events_file,
    parse_batch_record,
    read_takeovers,
)
from tests.conftest import free_port

UNITS = ("_seconds", "_records", "_info", "_alerts", "_batches", "_swaps", "_refusals", "_letters", "_takeovers")


@pytest.fixture
def metrics(tmp_path: Path) -> tuple[StreamMetrics, Settings]:
    settings = load_settings(home=tmp_path)
    return StreamMetrics(settings, serve=False), settings


def _progress(batch_id: int, latest: dict[str, int], end: dict[str, int]) -> dict:
    """A progress report as Spark's listener hands it over (offsets as JSON strings)."""
    return {
        "batchId": batch_id,
        "timestamp": "2026-12-01T10:00:00.000Z",
        "numInputRows": 120,
        "inputRowsPerSecond": 60.0,
        "processedRowsPerSecond": 40.0,
        "batchDuration": 3000,
        "sources": [
            {
                "latestOffset": json.dumps({"iot_stream": latest}),
                "endOffset": json.dumps({"iot_stream": end}),
                "metrics": {"maxOffsetsBehindLatest": "7"},
            }
        ],
    }


def _batch(batch_id: int) -> BatchMetrics:
    return BatchMetrics(
        batch_id=batch_id,
        input_rows=120,
        scored_rows=118,
        alerts=3,
        dead_letters={"invalid_json": 1, "out_of_range": 1},
        feature_status={"fresh": 100, "stale": 18},
        model_name="iot-anomaly",
        model_version="4",
        latency_ms={"p50": 900.0, "p95": 2100.0, "p99": 2500.0},
        latency_bins_ms=[(300.0, 10), (900.0, 100.4), (2500.0, 8), (500_000.0, 0.6)],
    )


def _families(metrics: StreamMetrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}


def test_names_follow_the_exposition_conventions(metrics: tuple[StreamMetrics, Settings]) -> None:
    stream, _ = metrics
    stream.record_batch(_batch(0))
    stream.record_progress(_progress(0, {"0": 10, "1": 30}, {"0": 10, "1": 23}))
    families = _families(stream)
    for name, family in families.items():
        assert name.startswith("warden_stream_"), name
        assert name.endswith(UNITS), f"{name} names no unit"
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), name
    assert families["warden_stream_event_latency_seconds"].type == "histogram"
    assert families["warden_stream_batch_duration_seconds"].type == "histogram"
    assert families["warden_stream_model_info"].type == "gauge"


def test_latency_histogram_counts_every_event_in_cumulative_buckets(metrics: tuple[StreamMetrics, Settings]) -> None:
    stream, _ = metrics
    stream.record_batch(_batch(0))
    stream.record_batch(_batch(1))
    samples = _families(stream)["warden_stream_event_latency_seconds"].samples
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert [float(le) for le in buckets if le != "+Inf"] == list(LATENCY_BUCKETS_S)
    counts = list(buckets.values())
    assert counts == sorted(counts), "buckets must be cumulative"
    assert buckets["0.25"] == 0 and buckets["0.5"] == 20 and buckets["1.0"] == 220 and buckets["4.0"] == 236
    assert buckets["+Inf"] == 238  # the 500 s bin (weight 0.6, one event) lands in +Inf only
    count = next(s.value for s in samples if s.name.endswith("_count"))
    total = next(s.value for s in samples if s.name.endswith("_sum"))
    assert count == 238
    assert total == pytest.approx(2 * (10 * 0.3 + 100 * 0.9 + 8 * 2.5 + 1 * 500.0))


def test_lag_is_reported_per_partition_in_prometheus_and_the_batch_record(
    metrics: tuple[StreamMetrics, Settings],
) -> None:
    stream, settings = metrics
    stream.record_batch(_batch(5))
    stream.record_progress(_progress(5, {"0": 10, "1": 30, "10": 5}, {"0": 4, "1": 30, "10": 1}))
    lag = {s.labels["partition"]: s.value for s in _families(stream)["warden_stream_consumer_lag_records"].samples}
    assert lag == {"0": 6.0, "1": 0.0, "10": 4.0}
    record = last_batch(settings)
    assert record is not None
    assert record.lag_by_partition == {"0": 6, "1": 0, "10": 4}
    assert list(record.lag_by_partition) == ["0", "1", "10"], "partitions in numeric order"
    assert record.consumer_lag_records == 10.0
    assert record.dead_letters == {"invalid_json": 1, "out_of_range": 1}
    assert record.model_version == "4"
    assert record.finished_at is not None  # the batch function's part is there
    info = _families(stream)["warden_stream_model_info"].samples
    assert [(s.labels["model_name"], s.labels["model_version"], s.value) for s in info] == [("iot-anomaly", "4", 1.0)]


def test_swaps_and_refusals_are_counted_and_kept_with_their_time(metrics: tuple[StreamMetrics, Settings]) -> None:
    stream, settings = metrics
    stream.record_model_event(SWAP, "2", previous="1")
    stream.record_model_event(REFUSAL, "3", reason="version 3 failed to load: ValueError")
    families = _families(stream)
    assert families["warden_stream_model_swaps"].samples[0].value == 1
    assert families["warden_stream_model_refusals"].samples[0].value == 1
    events = [json.loads(line) for line in model_events_file(settings).read_text().splitlines()]
    assert [(e["kind"], e["version"], e["previous"]) for e in events] == [(SWAP, "2", "1"), (REFUSAL, "3", "")]
    assert "failed to load" in events[1]["reason"] and events[0]["at"] <= events[1]["at"]


def test_a_takeover_is_recorded_with_its_first_batch_and_counted_across_drivers(
    metrics: tuple[StreamMetrics, Settings],
) -> None:
    stream, settings = metrics
    now = time.time()
    stream.record_takeover(
        Takeover(previous=4242, cause="exited", last_heartbeat=now - 3, detected_at=now - 2, fenced=1)
    )
    stream.record_batch(_batch(7))
    stream.record_progress(_progress(7, {"0": 10}, {"0": 10}))
    stream.record_batch(_batch(8))
    stream.record_progress(_progress(8, {"0": 10}, {"0": 10}))  # recorded once, with the first batch
    [takeover] = read_takeovers(settings)
    assert takeover["previous"] == 4242 and takeover["driver"] == os.getpid() and takeover["first_batch"] == 7
    assert takeover["kind"] == TAKEOVER and takeover["cause"] == "exited" and takeover["fenced"] == 1
    assert takeover["detection_seconds"] == pytest.approx(1.0, abs=0.01)
    assert 3.0 <= takeover["seconds"] < 60
    [record] = [r for r in batch_records(settings) if r.batch_id == 8]
    assert record.driver == os.getpid()

    # The next driver's endpoint goes on counting from the file: a counter that never goes back.
    port = free_port()
    StreamMetrics(settings.model_copy(update={"metrics_port": port}))  # the next driver, serving
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        for s in family.samples
    }
    assert samples["warden_stream_takeovers_total"] == 1
    assert samples["warden_stream_last_takeover_timestamp_seconds"] == pytest.approx(now - 2)
    assert samples["warden_stream_last_takeover_duration_seconds"] == pytest.approx(takeover["seconds"], abs=0.01)


def test_a_batch_record_is_read_by_its_one_parser_whatever_the_line_holds(
    metrics: tuple[StreamMetrics, Settings],
) -> None:
    stream, settings = metrics
    stream.record_progress(_progress(6, {"0": 10}, {"0": 10}))  # a trigger the batch function did not record
    record = last_batch(settings)
    assert record is not None and record.batch_id == 6
    assert record.finished_at is None and record.input_rows == 0
    assert parse_batch_record('{"batch_id": 7, "num_input_rows": ') is None  # a line being written
    assert parse_batch_record('{"num_input_rows": 3}') is None  # not a batch record
    # A field a newer writer adds is ignored by an older reader, not an error.
    newer = parse_batch_record('{"batch_id": 8, "scored_rows": 5, "finished_at": 1.5, "added_later": true}')
    assert newer is not None and (newer.batch_id, newer.scored_rows, newer.finished_at) == (8, 5, 1.5)
