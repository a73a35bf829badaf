"""Entities: the keys features are looked up by."""

from feast import Entity, ValueType

device = Entity(
    name="device",
    join_keys=["device_id"],
    value_type=ValueType.STRING,
    description="One sensor device; device_id is the Kafka key of its telemetry.",
    owner="streamwarden",
    tags={"domain": "iot"},
)
