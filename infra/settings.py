"""The one configuration module: typed settings read from the environment (and a local `.env`).

Every other module receives a `Settings` instance; nothing else reads `os.environ` for
streamwarden's own configuration. Bad values fail at load time with the variable's name.

The settings are grouped by what they configure: `settings.kafka.bootstrap`,
`settings.stream.batch_tasks`, `settings.gate.min_f1`. A group's variables are named after it:
WARDEN_<GROUP>_<FIELD> (WARDEN_KAFKA_BOOTSTRAP, WARDEN_STREAM_BATCH_TASKS, WARDEN_GATE_MIN_F1), so
every variable keeps the name it had when the settings were one flat class. The rest are
WARDEN_<FIELD>, or the standard name noted (MLFLOW_TRACKING_URI, JAVA_HOME).
"""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from infra.exceptions import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]

Port = Annotated[int, Field(ge=1, le=65535)]


def _memory_size(value: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*([kmgt]b?)?", value.lower()):
        raise ValueError(f"must be a memory size such as 512m, 2g or 2gb, got {value!r}")
    return value


# A memory size as Spark takes it: a number of MiB, or with a unit (k, m, g, t, optionally kb…).
MemorySize = Annotated[str, AfterValidator(_memory_size)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def _port_of(hostport: str, what: str) -> tuple[str, int]:
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{what} must be host:port, got {hostport!r}")
    return host.strip("[]"), int(port)


class _Group(BaseModel):
    # An unknown WARDEN_<GROUP>_* variable is ignored, as an unknown WARDEN_* one is.
    model_config = ConfigDict(frozen=True, extra="ignore")


def _group_class(annotation: Any) -> type[_Group] | None:
    """The group a field of `Settings` holds, or None for a single setting."""
    return annotation if isinstance(annotation, type) and issubclass(annotation, _Group) else None


class HdfsSettings(_Group):
    """The embedded HDFS (`warden up --lake hdfs`); its RPC address is the one in WARDEN_LAKE_ROOT."""

    http_port: Port = Field(default=9870, description="NameNode web port: WebHDFS, JMX, the UI.")
    datanode_port: Port = Field(default=9866, description="DataNode data transfer port.")
    datanode_http_port: Port = 9864
    datanode_ipc_port: Port = 9867
    heap_mb: PositiveInt = 384
    user: str = Field(
        default_factory=getpass.getuser,
        description="User the lake is read and written as over WebHDFS (Spark uses the OS user too).",
    )


class KafkaSettings(_Group):
    bootstrap: str = Field(
        default="127.0.0.1:9092",
        description="Bootstrap servers; the embedded broker listens on this address.",
    )
    controller_port: Port = 9093
    heap_mb: PositiveInt = 512

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            _port_of(server.strip(), "WARDEN_KAFKA_BOOTSTRAP")
        return value

    @property
    def listen(self) -> tuple[str, int]:
        """Host and port the embedded broker listens on: the first bootstrap server."""
        return _port_of(self.bootstrap.split(",")[0].strip(), "WARDEN_KAFKA_BOOTSTRAP")


class TopicSettings(_Group):
    """The contract's topics."""

    telemetry: str = "iot_stream"
    alerts: str = "anomaly_alerts"
    dlq: str = "iot_stream_dlq"


class AirflowSettings(_Group):
    port: Port = 8080
    parallelism: PositiveInt = Field(
        default=3, description="LocalExecutor workers; Airflow's default of 32 swamps two cores."
    )
    schedules: bool = Field(
        default=True,
        description="Airflow runs the DAGs on their schedules (declared in dags/: retrain daily, feature_refresh every "
        "15 minutes, promote on a new challenger); false leaves every DAG to manual triggers (the embedded stack "
        "sets Airflow's [scheduler] use_job_schedule from it).",
    )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class SparkSettings(_Group):
    master: str = Field(
        default="local[*]",
        description='"local[*]" runs Spark inside each job; spark://host:port a standalone cluster '
        "(`warden up --spark-cluster` starts one on 127.0.0.1).",
    )
    master_ui_port: Port = Field(default=8090, description="Embedded standalone master's UI.")
    worker_ui_port: Port = Field(default=8091, description="Embedded standalone worker's UI.")
    worker_cores: PositiveInt = Field(
        default=4,
        description="Cores the embedded worker offers: twice the machine's two, so the stream and a retraining run fit.",
    )
    app_max_cores: PositiveInt = Field(default=2, description="Cores one application takes on a standalone cluster.")
    worker_memory: MemorySize = Field(default="4g", description="Memory the embedded worker offers to executors.")
    executor_memory: MemorySize = "2g"
    driver_memory: MemorySize = "2g"
    driver_max_result_size: MemorySize = Field(
        default="1g",
        description="Most bytes one Spark job may hand back to Python: a step that tried to collect a "
        "whole training window fails at this bound, rather than the process running out of memory.",
    )
    shuffle_partitions: PositiveInt = 2

    @field_validator("master")
    @classmethod
    def _check_master(cls, value: str) -> str:
        if value.startswith("local"):
            return value
        parts = urlsplit(value)
        if parts.scheme != "spark" or not parts.hostname or not parts.port:
            raise ValueError(f'must be "local[*]" or spark://host:port, got {value!r}')
        return value

    @property
    def master_listen(self) -> tuple[str, int]:
        """Host and port of a spark:// master, else the embedded cluster's default."""
        if self.master.startswith("spark://"):
            parts = urlsplit(self.master)
            return parts.hostname or "127.0.0.1", parts.port or 7077
        return "127.0.0.1", 7077


class StreamSettings(_Group):
    """The streaming job (`warden stream`)."""

    starting_offsets: str = Field(
        default="earliest",
        description='Where a new query starts: "earliest", "latest" or Spark\'s per-partition JSON. '
        "Ignored once the query has a checkpoint: the checkpoint's offsets win.",
    )
    batch_tasks: PositiveInt = Field(
        default=1,
        description="Spark tasks per micro-batch. One task needs no shuffle for the batch's per-device steps "
        "(the lowest fixed cost per batch); more use more cores on big batches, at a shuffle's cost.",
    )
    max_offsets_per_trigger: PositiveInt = Field(
        default=400_000, description="Admission control: at most this many events per micro-batch."
    )
    trigger_seconds: float = Field(
        default=0.0, ge=0.0, description="Micro-batch interval; 0 starts the next batch as soon as one ends."
    )
    fail_on_data_loss: bool = Field(
        default=True,
        description="Stop the query when offsets it has not read were deleted (retention) or a topic "
        "was recreated. False skips the lost range and goes on: only for short-retention dev topics.",
    )
    max_restarts: int = Field(
        default=5,
        ge=0,
        description="A failed micro-batch restarts the query from its checkpoint, after 2, 4, 8… s (at most 30); "
        "this many failures in a row without a committed batch stop `warden stream`. 0 stops on the first.",
    )
    lease_seconds: float = Field(
        default=10.0,
        gt=1.0,
        description="Every driver of the stream renews its record each second; a standby takes over from an "
        "active driver silent for longer than this (hung, not dead: a dead one is taken over at once), after "
        "killing its processes so that it never writes again.",
    )
    batch_timeout_seconds: float = Field(
        default=300.0,
        gt=0.0,
        description="A micro-batch running longer than this is taken as stuck (a Kafka client that waits forever "
        "on a broker that went away): its driver stops renewing its lease, so that a standby fences it and takes "
        "over, and `warden status` shows the stream as not running. A full batch of "
        "WARDEN_STREAM_MAX_OFFSETS_PER_TRIGGER events takes 30-60 s on two cores.",
    )
    standby: bool = Field(
        default=False,
        description="`warden up --service stream` also starts a standby driver beside the active one: it waits "
        "ready (session built, champion loaded) and takes the query over within seconds if the active one dies.",
    )
    statistics_refresh_seconds: float = Field(
        default=30.0,
        gt=0,
        description="The stream keeps its devices' online statistics in memory and reads them again from "
        "Feast's online store this often, in the background (a device met for the first time is read at once).",
    )
    inline_alerts_max_rows: PositiveInt = Field(
        default=50_000,
        description="A micro-batch with at most this many valid events brings its alerts to the driver with its "
        "scored write (no second pass); a bigger one reads them back from its lake files, a file (50,000 rows) at "
        "a time, so that the driver's memory stays bounded whatever the batch's size and alert rate. The read-back "
        "costs 1.5-2 s a batch on two cores. A batch's rejected records among those rows, 1,000 at most, come "
        "with it too.",
    )


class FeatureSettings(_Group):
    """The features' windows, on the stream and in training alike."""

    window_minutes: PositiveInt = Field(default=60, description="Length of the per-device rolling window.")
    step_minutes: PositiveInt = Field(default=15, description="Rolling statistics are computed on this grid.")
    max_age_minutes: PositiveInt = Field(
        default=120, description="Online statistics older than this are stale and not used."
    )
    baseline_days: PositiveInt = Field(
        default=7,
        description="Days of history in a device's long-term baseline, which stands in for stale or missing statistics.",
    )


# The models' sizes: the defaults are the ones the bench's quality figures are measured with;
# smaller values train in seconds (the tests, a quick look at a new data set).


class RandomForestSettings(_Group):
    num_trees: PositiveInt = Field(default=60, description="Trees of the Random Forest.")
    max_depth: PositiveInt = Field(default=10, le=30, description="Depth of each Random Forest tree.")


class XGBoostSettings(_Group):
    num_rounds: PositiveInt = Field(default=200, description="Boosting rounds of XGBoost.")
    max_depth: PositiveInt = Field(default=6, le=20, description="Depth of each XGBoost tree.")
    max_rows: PositiveInt = Field(
        default=2_000_000,
        description="Most training rows XGBoost fits on, in the training process's memory (about 0.3 GB a "
        "million): a larger training split keeps every anomaly (up to half of these) and samples normal rows "
        "to fill the rest, and the run records the fractions.",
    )


class GateSettings(_Group):
    """The evaluation gate between a trained candidate and a person's approval (pipelines/gate.py)."""

    metric: Literal["f1", "pr_auc", "precision", "recall"] = Field(
        default="f1", description="Test-window metric that picks the best candidate and must beat the champion's."
    )
    margin: Fraction = Field(
        default=0.005, description="By how much the candidate's metric must exceed the champion's."
    )
    min_f1: Fraction = Field(default=0.70, description="Floor: test F1 of a promotable candidate.")
    min_precision: Fraction = Field(default=0.60, description="Floor: test precision.")
    min_recall: Fraction = Field(default=0.60, description="Floor: test recall.")
    min_test_anomalies: PositiveInt = Field(
        default=30, description="Fewest anomalies the test split must hold for its F1 to judge a candidate."
    )


class ValidationSettings(_Group):
    """Data validation of the training window (pipelines/validation.py)."""

    min_rows: PositiveInt = Field(
        default=1000, description="A training window with fewer labeled events fails validation."
    )
    max_null_fraction: Fraction = Field(
        default=0.0, description="Largest fraction of nulls allowed in an id, `ts` or a sensor column."
    )
    min_anomaly_fraction: Fraction = Field(
        default=0.001, description="The window fails with fewer labeled anomalies than this fraction."
    )
    max_anomaly_fraction: Fraction = Field(
        default=0.30, description="The window fails with more labeled anomalies than this fraction."
    )
    max_staleness_hours: float = Field(
        default=6.0, gt=0.0, description="The newest event may be at most this many hours older than the window's end."
    )


class Settings(BaseSettings):
    """streamwarden's settings. Environment variables are WARDEN_<GROUP>_<FIELD> for a group's,
    WARDEN_<FIELD> for the others, unless noted."""

    model_config = SettingsConfigDict(
        env_prefix="WARDEN_",
        env_file=".env",
        # WARDEN_KAFKA_BOOTSTRAP is `kafka.bootstrap`: split once, after the group's name.
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    home: Path = Field(
        default=Path("~/.streamwarden"),
        description="Local state: service data, pids, logs, secrets, checkpoints.",
    )
    lake_root: str = Field(
        default="",
        description="Root of the lake: a local folder (default $WARDEN_HOME/lake) or hdfs://host:port/path.",
    )
    hdfs: HdfsSettings = Field(default_factory=HdfsSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic: TopicSettings = Field(default_factory=TopicSettings)
    telemetry_partitions: PositiveInt = 12

    # MLflow: the standard MLflow variables, so the mlflow client and our code agree.
    mlflow_tracking_uri: str = Field(
        default="http://127.0.0.1:5000",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "WARDEN_MLFLOW_TRACKING_URI"),
    )
    mlflow_username: str = Field(
        default="admin",
        validation_alias=AliasChoices("MLFLOW_TRACKING_USERNAME", "WARDEN_MLFLOW_USERNAME"),
    )
    mlflow_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_PASSWORD", "WARDEN_MLFLOW_PASSWORD"),
        description="Defaults to the password generated by the first `warden up`.",
    )

    airflow: AirflowSettings = Field(default_factory=AirflowSettings)
    dashboard_port: Port = Field(default=8050, description="The operators' dashboard's port on 127.0.0.1.")
    spark: SparkSettings = Field(default_factory=SparkSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    max_event_bytes: PositiveInt = Field(default=4096, description="Bigger events go to the dead-letter topic.")
    champion_poll_seconds: float = Field(
        default=5.0, gt=0, description="How often the stream re-checks the champion alias."
    )
    metrics_port: Port = Field(default=9108, description="Prometheus metrics of the stream.")

    # Features and models
    model_name: str = "iot-anomaly"
    feature: FeatureSettings = Field(default_factory=FeatureSettings)
    feast_config: Path | None = Field(
        default=None,
        description="feature_store.yaml to use instead of features/repo's (SQLite online store under WARDEN_HOME), "
        "e.g. infra/deploy/production/feature_store.yaml (Redis, a SQL registry).",
    )
    rf: RandomForestSettings = Field(default_factory=RandomForestSettings)
    xgb: XGBoostSettings = Field(default_factory=XGBoostSettings)

    # Retraining, the evaluation gate and promotion (pipelines/, dags/)
    training_window_days: PositiveInt = Field(
        default=7, description="Retraining uses the last D days of labeled history."
    )
    lock_wait_seconds: float = Field(
        default=3600.0,
        gt=0.0,
        description="How long a training or feature refresh waits for another one to finish before it gives up.",
    )
    gate: GateSettings = Field(default_factory=GateSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)

    verbose: bool = Field(
        default=False,
        description="The libraries' log lines (Spark, py4j, MLflow, Feast) on the terminal too, and tracebacks; "
        "`warden --verbose` sets it. Otherwise they go to files under $WARDEN_HOME/logs.",
    )

    # JVM
    jars_dir: Path = Field(default=PROJECT_ROOT / ".jvm", description="Where `make jvm` put the Maven artifacts.")
    java_home: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("WARDEN_JAVA_HOME", "JAVA_HOME"),
        description="JDK for the broker and Spark; `java` on PATH when unset.",
    )

    @field_validator("home", "jars_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("feast_config", mode="after")
    @classmethod
    def _resolve_feast_config(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value.expanduser()
        path = path if path.is_absolute() else PROJECT_ROOT / path  # relative to the project, like dags/
        if not path.is_file():
            raise ValueError(f"no feature_store.yaml at {path}")
        return path

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _check_tracking_uri(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s):// URL of an MLflow server, got {value!r}")
        return value.rstrip("/")

    @field_validator("lake_root")
    @classmethod
    def _check_lake_root(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("", "file", "hdfs"):
            raise ValueError(f"must be a local folder, file:// or hdfs:// URL, got scheme {scheme!r} in {value!r}")
        return value

    # Derived values: computed, never configured twice.

    @property
    def lake_url(self) -> str:
        """The lake root as a URL or absolute path (default: $WARDEN_HOME/lake)."""
        if not self.lake_root:
            return str(self.home / "lake")
        if "://" in self.lake_root:
            return self.lake_root.rstrip("/")
        return str(Path(self.lake_root).expanduser().resolve())

    @property
    def lake_on_hdfs(self) -> bool:
        return self.lake_url.startswith("hdfs://")

    @property
    def hdfs_namenode(self) -> tuple[str, int]:
        """NameNode RPC host and port: those of an hdfs:// lake root, else the embedded default."""
        if self.lake_on_hdfs:
            parts = urlsplit(self.lake_url)
            return parts.hostname or "127.0.0.1", parts.port or 8020
        return "127.0.0.1", 8020

    @property
    def webhdfs_url(self) -> str:
        """The NameNode's web address: WebHDFS (`/webhdfs/v1`), JMX (`/jmx`) and its UI."""
        return f"http://{self.hdfs_namenode[0]}:{self.hdfs.http_port}"

    @property
    def mlflow_listen(self) -> tuple[str, int]:
        parts = urlsplit(self.mlflow_tracking_uri)
        return parts.hostname or "127.0.0.1", parts.port or 5000

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def checkpoint_dir(self) -> Path:
        return self.home / "checkpoints" / "stream"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def java(self) -> str:
        return str(self.java_home / "bin" / "java") if self.java_home else "java"

    def updated(self, **changes: Any) -> Settings:
        """A copy with some settings changed, named as in the environment without the prefix
        (`gate_margin=0.5`, `model_name="x"`); like `model_copy`, it does not validate them again."""
        top: dict[str, Any] = {}
        for group, fields in _nest(changes).items():
            current = getattr(self, group)
            top[group] = current.model_copy(update=fields) if isinstance(current, _Group) else fields
        return self.model_copy(update=top)

    @classmethod
    def flat_names(cls) -> list[str]:
        """Every setting's flat name (`kafka_bootstrap`, `model_name`), in declaration order."""
        names: list[str] = []
        for name, field in cls.model_fields.items():
            group = _group_class(field.annotation)
            names += [f"{name}_{member}" for member in group.model_fields] if group else [name]
        return names

    @classmethod
    def variables(cls) -> set[str]:
        """Every environment variable the settings read."""
        found = {_variable(name) for name in cls.flat_names()}
        for field in cls.model_fields.values():
            if isinstance(field.validation_alias, AliasChoices):
                found.update(str(choice) for choice in field.validation_alias.choices)
        return found

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name, in declaration order: pydantic's dump, each group's
        fields under their group's prefix. Python values (a secret is still a SecretStr)."""
        flat: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if name in _GROUPS:
                flat.update({f"{name}_{member}": member_value for member, member_value in value.items()})
            else:
                flat[name] = value
        return flat

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for the processes the stack starts."""
        return {
            _variable(name): str(value.get_secret_value() if isinstance(value, SecretStr) else value)
            for name, value in self.flat().items()
            if value is not None
        }

    def as_dict(self) -> dict[str, Any]:
        """The effective settings by their flat names, secrets masked, paths as text, for `warden status`."""
        shown = {
            name: "********" if isinstance(value, SecretStr) else str(value) if isinstance(value, Path) else value
            for name, value in self.flat().items()
        }
        shown["lake_root"] = self.lake_url
        return shown


_GROUPS = {name for name, field in Settings.model_fields.items() if _group_class(field.annotation)}


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat names (`gate_margin`) as the model's shape (`{"gate": {"margin": …}}`); an unknown
    name is a ConfigError."""
    known = set(Settings.flat_names())
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        if name not in known:
            raise ConfigError(f"no setting {name} (WARDEN_{name.upper()})")
        group, _, member = name.partition("_")
        if group in _GROUPS and name not in Settings.model_fields:
            nested.setdefault(group, {})[member] = value
        else:
            nested[name] = value
    return nested


def _variable(name: str) -> str:
    """The environment variable of a setting by its flat name: its first alias, or WARDEN_<NAME>."""
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"WARDEN_{name.upper()}"


# Names that no longer configure anything, and what does it now: a value set for one would
# otherwise be ignored without a word.
_REMOVED = {
    "WARDEN_RETRAIN_SCHEDULE": "the schedules are declared in dags/; WARDEN_AIRFLOW_SCHEDULES=false turns them off",
    "WARDEN_FEATURE_REFRESH_SCHEDULE": "the schedules are declared in dags/; "
    "WARDEN_AIRFLOW_SCHEDULES=false turns them off",
    "WARDEN_APPROVAL_TIMEOUT_HOURS": "the approval's timeout is declared in dags/promote.py (24 h)",
}


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and `.env`, with `overrides` by their flat names
    (`load_settings(home=…, stream_lease_seconds=3)`); a bad value is one readable ConfigError."""
    given = set(os.environ) | set(dotenv_values(".env"))
    if removed := sorted(set(_REMOVED) & given):
        raise ConfigError(f"{removed[0]} is no longer read: {_REMOVED[removed[0]]}")
    try:
        return Settings(**_nest(overrides))
    except SettingsError as exc:  # a group's variable that is not JSON, e.g. WARDEN_STREAM=x
        raise ConfigError(f"invalid configuration: {exc}") from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = [str(part) for part in error["loc"]]
            known = bool(location) and location[0] in Settings.model_fields
            name = "WARDEN_" + "_".join(location).upper() if known else ".".join(location) or "settings"
            problems.append(f"{name}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
