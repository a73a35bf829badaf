"""The production files in infra/deploy/ refer only to metrics the stream really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infra.settings import PROJECT_ROOT, load_settings
from streaming.metrics import BatchMetrics, StreamMetrics

DEPLOY = PROJECT_ROOT / "infra" / "deploy"
NAME = re.compile(r"\bwarden_stream_[a-z_]+")


def _exported(tmp_path: Path) -> set[str]:
    metrics = StreamMetrics(load_settings(home=tmp_path), serve=False)
    metrics.record_batch(BatchMetrics(0, input_rows=1, dead_letters={"invalid_json": 1}, feature_status={"fresh": 1},
                                      model_name="m", model_version="1", latency_bins_ms=[(10.0, 1)]))
    metrics.record_model_event("swap", "1")
    metrics.record_model_event("refusal", "2", reason="test")
    metrics.lag.labels("0").set(0)
    text = generate_latest(metrics.registry).decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def _queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "streamwarden-stream.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queries += [a["expr"] for a in dashboard["annotations"]["list"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "streamwarden-rules.yml").read_text())
    queries += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return queries


def test_every_query_names_an_exported_series(tmp_path: Path) -> None:
    exported = _exported(tmp_path)
    used = {name for query in _queries() for name in NAME.findall(query)}
    assert len(used) >= 8
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_the_scrape_config_loads_the_rules_file() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert all((DEPLOY / "prometheus" / name).exists() for name in config["rule_files"])
    assert [job["job_name"] for job in config["scrape_configs"]] == ["streamwarden-stream"]
