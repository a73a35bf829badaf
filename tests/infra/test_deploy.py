"""The production files in infra/deploy/ refer only to metrics the stream really exports and to
settings that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infra.settings import PROJECT_ROOT, load_settings
from streaming.metrics import BatchMetrics, StreamMetrics

DEPLOY = PROJECT_ROOT / "infra" / "deploy"
NAME = re.compile(r"\bwarden_stream_[a-z_]+")


def _exported(tmp_path: Path) -> set[str]:
    metrics = StreamMetrics(load_settings(home=tmp_path), serve=False)
    metrics.record_batch(
        BatchMetrics(
            batch_id=0,
            input_rows=1,
            dead_letters={"invalid_json": 1},
            feature_status={"fresh": 1},
            model_name="m",
            model_version="1",
            latency_bins_ms=[(10.0, 1)],
        )
    )
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


def _production_env() -> dict[str, str]:
    lines = (DEPLOY / "production" / "warden.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_production_env_file_sets_only_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.settings import Settings
    from infra.stack import manager

    known = Settings.variables()
    production = _production_env()
    assert set(production) <= known, f"not settings: {sorted(set(production) - known)}"
    for key, value in production.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.lake_on_hdfs and settings.spark.master.startswith("spark://")
    assert settings.feast_config == DEPLOY / "production" / "feature_store.yaml"
    # Remote brokers, MLflow, NameNode and master: `warden up` must not try to start them here.
    assert manager.default_services(settings) == ("airflow", "dashboard")


def test_the_production_feature_store_is_the_same_project_on_redis() -> None:
    embedded = yaml.safe_load((PROJECT_ROOT / "features" / "repo" / "feature_store.yaml").read_text())
    production = yaml.safe_load((DEPLOY / "production" / "feature_store.yaml").read_text())
    assert production["project"] == embedded["project"]
    assert production["entity_key_serialization_version"] == embedded["entity_key_serialization_version"]
    assert production["online_store"]["type"] == "redis"
    assert production["registry"]["registry_type"] == "sql"
