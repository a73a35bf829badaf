"""The context of one entry point: the settings and every client built from them, each built once.

A CLI command, an Airflow task, the stream and a test each build one `Context` and hand its parts
to the stage functions, which take what they use. Building it is the one place the process's
environment is set (`infra.environment`); each client is made on first use, so a command that
never touches Spark never starts a JVM.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from infra.environment import apply_library_environment
from infra.lake import Lake
from infra.settings import Settings, load_settings

if TYPE_CHECKING:
    from feast import FeatureStore
    from pyspark.sql import SparkSession

    from models.registry import ModelRegistry


@dataclass
class Context:
    settings: Settings
    # The Spark application's name: it names the driver's log file and the app in Spark's UI.
    app: str
    # Spark with the Kafka connector on its class path (the stream, the bench), or without it.
    with_kafka: bool = False

    @classmethod
    def build(cls, app: str, settings: Settings | None = None, *, with_kafka: bool = False) -> Context:
        """The context for `settings` (default: from the environment), the environment set for them."""
        settings = settings if settings is not None else load_settings()
        apply_library_environment(settings)
        return cls(settings, app, with_kafka)

    def for_model(self, model_name: str | None) -> Context:
        """The same context for another registered model, when a run names one."""
        if not model_name or model_name == self.settings.model_name:
            return self
        other = Context(self.settings.model_copy(update={"model_name": model_name}), self.app, self.with_kafka)
        for shared in ("spark", "lake", "feature_store"):  # the clients that do not depend on the model
            if shared in self.__dict__:
                other.__dict__[shared] = self.__dict__[shared]
        return other

    def start_spark(self) -> SparkSession:
        """The Spark session, built now if it was not yet: before a measured step or a progress
        line, so that neither carries the JVM's start, and a master that does not answer fails first."""
        return self.spark

    @cached_property
    def spark(self) -> SparkSession:
        from infra.spark import spark_session

        return spark_session(self.settings, self.app, with_kafka=self.with_kafka)

    @cached_property
    def lake(self) -> Lake:
        return Lake(self.settings)

    @cached_property
    def registry(self) -> ModelRegistry:
        from models.registry import ModelRegistry

        return ModelRegistry.connect(self.settings)

    @cached_property
    def feature_store(self) -> FeatureStore:
        from features.store import feature_store

        return feature_store(self.settings)
