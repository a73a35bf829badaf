"""The embedded Apache Kafka broker: one KRaft node started from the Maven jars with `java`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from infra.endpoints import admin_client, kafka_health
from infra.exceptions import ServiceError
from infra.probes import Health
from infra.settings import Settings
from infra.stack.process import ManagedProcess, require_free_port, run_java

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def contract_topics(settings: Settings) -> list[TopicSpec]:
    """The topics of ARCHITECTURE.md's external contract."""
    return [
        TopicSpec(settings.topic.telemetry, settings.telemetry_partitions),
        TopicSpec(settings.topic.alerts, settings.telemetry_partitions),
        TopicSpec(settings.topic.dlq, 1),
    ]


class KafkaBroker:
    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "kafka"
        self.process = ManagedProcess(self.name, settings.home)

    @property
    def url(self) -> str:
        return self.settings.kafka.bootstrap

    @property
    def ports(self) -> list[int]:
        return [self.settings.kafka.listen[1], self.settings.kafka.controller_port]

    def _classpath(self) -> str:
        jars = self.settings.jars_dir / "kafka"
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise ServiceError(f"Kafka jars not found in {jars}; run `make jvm` to fetch them with Maven")
        return f"{jars}/*"

    def _render_config(self) -> Path:
        host, port = self.settings.kafka.listen
        template = (_HERE / "server.properties.template").read_text()
        config = self.dir / "server.properties"
        config.write_text(
            template.format(
                host=host,
                port=port,
                controller_port=self.settings.kafka.controller_port,
                log_dir=self.dir / "data",
            )
        )
        return config

    def _format_storage_once(self, config: Path, classpath: str) -> None:
        """Format the log dir on first start; the cluster id is kept so data survives restarts."""
        if (self.dir / "data" / "meta.properties").exists():
            return
        cluster_id_file = self.dir / "cluster.id"
        if not cluster_id_file.exists():
            cluster_id = self._java(classpath, "kafka.tools.StorageTool", "random-uuid").strip()
            cluster_id_file.write_text(cluster_id)
        self._java(
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--ignore-formatted",
            "-t",
            cluster_id_file.read_text().strip(),
            "-c",
            str(config),
        )

    def _java(self, classpath: str, main: str, *args: str) -> str:
        return run_java([self.settings.java, "-Xmx256m", "-cp", classpath, main, *args], f"kafka: {main} {args[0]}")

    def start(self) -> None:
        if self.process.pid() is not None:
            return
        host, _ = self.settings.kafka.listen
        for port in self.ports:
            require_free_port(host, port, "kafka")
        classpath = self._classpath()
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self._render_config()
        self._format_storage_once(config, classpath)
        heap = f"-Xmx{self.settings.kafka.heap_mb}m"
        self.process.start(
            [
                self.settings.java,
                heap,
                f"-Xms{self.settings.kafka.heap_mb}m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={_HERE / 'kafka-log4j2.properties'}",
                f"-Dkafka.logs.dir={self.settings.home / 'logs'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ]
        )

    def health(self) -> Health:
        return kafka_health(self.settings)

    def ensure_topics(self) -> list[str]:
        """Create the contract's topics if missing; refuse a topic with the wrong partition count."""
        admin = admin_client(self.settings)
        existing = admin.list_topics(timeout=5).topics
        created = []
        for spec in contract_topics(self.settings):
            if spec.name in existing:
                actual = len(existing[spec.name].partitions)
                if actual != spec.partitions:
                    raise ServiceError(
                        f'topic "{spec.name}" has {actual} partitions, expected {spec.partitions}; '
                        'run "warden down --purge" then "warden up"'
                    )
                continue
            future = admin.create_topics([NewTopic(spec.name, spec.partitions, 1)])[spec.name]
            try:
                future.result(timeout=15)
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # created a moment ago, by us or another process; metadata lagged behind
                raise ServiceError(f'cannot create topic "{spec.name}": {exc.args[0].str()}') from None
            created.append(spec.name)
        return created

    def exited_early(self) -> str | None:
        return self.process.exited_early()

    def stop(self) -> bool:
        return self.process.stop(timeout=30)
