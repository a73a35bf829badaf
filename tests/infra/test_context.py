"""The context an entry point builds: the environment the libraries read, and clients of its own settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.context import Context
from infra.settings import load_settings


def test_building_a_context_sets_the_libraries_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    settings = load_settings(home=tmp_path)
    Context.build("warden-tests", settings)
    assert os.environ["TZ"] == "UTC"
    assert os.environ["MLFLOW_TRACKING_URI"] == settings.mlflow_tracking_uri
    # A client never generates the MLflow password: no secret is written, none is sent.
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    assert not (tmp_path / "secrets").exists()


def test_each_context_opens_the_feature_store_of_its_own_settings(tmp_path: Path) -> None:
    first = Context.build("warden-tests", load_settings(home=tmp_path / "a"))
    second = Context.build("warden-tests", load_settings(home=tmp_path / "b"))
    # Built after the second context: the first still opens its own store, not the last one's.
    assert first.feature_store.config.registry.path == str(tmp_path / "a" / "feast" / "registry.db")
    assert second.feature_store.config.registry.path == str(tmp_path / "b" / "feast" / "registry.db")
    assert first.for_model("other").settings.model_name == "other"
    assert first.for_model(None) is first
