"""The services the platform is a client of (the Kafka broker, the MLflow tracking server), seen
from the client side: how a client is set up for each, and whether it answers.

Production code reaches its services through here, never through the embedded stack, which
only starts them on a development machine.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from infra.logs import KAFKA_CLIENT_LOG
from infra.probes import PROBE_TIMEOUTS, Health, State, ask_patiently, http_health, port_is_open, require, slow
from infra.settings import Settings

# What librdkafka reports for a request that was late, rather than refused.
_LATE = (KafkaError._TIMED_OUT, KafkaError._TRANSPORT)


def admin_client(settings: Settings) -> AdminClient:
    # log_level 0: a probe of a stopped broker must not fill stderr with connection retries. A request
    # may take as long as the health probe's patience, so that a busy broker is seen slow, not down.
    return AdminClient(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "socket.timeout.ms": int(PROBE_TIMEOUTS[-1] * 1000),
            "log_level": 0,
            "logger": KAFKA_CLIENT_LOG,  # type: ignore[dict-item]  # confluent-kafka's stubs omit `logger`
        }
    )


def kafka_health(settings: Settings) -> Health:
    """Up when the broker answers a metadata request and every partition has a leader."""
    host, port = settings.kafka.listen
    if not port_is_open(host, port):
        return Health(State.DOWN, f"nothing listens on {host}:{port}")
    admin = admin_client(settings)
    try:
        # The port took the connection: a metadata request that fails now, in time or for want of a
        # broker connection (librdkafka's "transport failure" while the handshake waits), is late.
        metadata = ask_patiently(
            lambda timeout: admin.list_topics(timeout=timeout),
            lambda exc: isinstance(exc, KafkaException) and exc.args[0].code() in _LATE,
        )
    except KafkaException as exc:
        return Health(State.DOWN, f"metadata request failed: {exc.args[0].str()}")
    if metadata is None:
        return slow(f"the broker at {host}:{port}")
    # A restarted broker answers metadata requests before its partitions have a leader again;
    # until they do, reads and writes fail with "not leader for partition".
    leaderless = sum(
        1 for topic in metadata.topics.values() for part in topic.partitions.values() if part.leader < 0 or part.error
    )
    if leaderless:
        return Health(State.SLOW, f"{leaderless} partition(s) have no leader yet")
    return Health(State.UP, f"{len(metadata.brokers)} broker(s), {len(metadata.topics)} topics")


def require_kafka(settings: Settings) -> None:
    """Fail in one line when the broker does not answer."""
    require(
        "kafka",
        settings.kafka.bootstrap,
        kafka_health(settings),
        "start it with `warden up`, or fix WARDEN_KAFKA_BOOTSTRAP",
    )


def mlflow_health(settings: Settings) -> Health:
    return http_health(f"{settings.mlflow_tracking_uri}/health")


def require_mlflow(settings: Settings) -> None:
    """Fail in one line when the tracking server does not answer, before the client's first call."""
    require(
        "mlflow",
        settings.mlflow_tracking_uri,
        mlflow_health(settings),
        "start it with `warden up`, or fix MLFLOW_TRACKING_URI",
    )
