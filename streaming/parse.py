"""Parse and validate raw Kafka records in Spark SQL (in the JVM: no Python on the per-row path).

Every record leaves with either the contract's typed columns or a stable reject reason code
(and a human-readable detail); nothing is dropped and nothing raises.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features.schema import EVENT_FIELDS, SENSOR_BOUNDS, SENSOR_COLUMNS

# Stable reason codes, in the order they are checked; the DLQ header `reason` carries one.
TOO_LARGE = "too_large"
INVALID_JSON = "invalid_json"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
BAD_TIMESTAMP = "bad_timestamp"
NON_FINITE = "non_finite"
OUT_OF_RANGE = "out_of_range"
REASONS = (TOO_LARGE, INVALID_JSON, MISSING_FIELD, WRONG_TYPE, BAD_TIMESTAMP, NON_FINITE, OUT_OF_RANGE)

_CORRUPT = "_corrupt_record"
# The contract's types: the one parse every valid event goes through. JSON integers are valid
# doubles; a quoted number or any other mismatch puts the record in the corrupt column.
_TYPED_SCHEMA = T.StructType(
    [T.StructField(name, T.DoubleType() if name in SENSOR_COLUMNS else T.StringType()) for name in EVENT_FIELDS]
    + [T.StructField(_CORRUPT, T.StringType())]
)
# Every field as text, parsed only for the rare records the typed parse could not take: it tells
# a missing field from one of the wrong type, and bad JSON from good.
_TEXT_SCHEMA = T.StructType(
    [T.StructField(name, T.StringType()) for name in EVENT_FIELDS] + [T.StructField(_CORRUPT, T.StringType())]
)
_PERMISSIVE = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}


def _names_where(conditions: dict[str, Column]) -> Column:
    return F.concat_ws(",", *(F.when(cond, F.lit(name)) for name, cond in conditions.items()))


def _any(conditions: dict[str, Column]) -> Column:
    result = F.lit(False)
    for condition in conditions.values():
        result = result | condition
    return result


def parse_events(records: DataFrame, max_event_bytes: int) -> DataFrame:
    """Kafka records (key, value, topic, partition, offset, timestamp) → events plus `reason`.

    `reason` is null for a valid event. A numeric `event_id` or `device_id` is accepted as its
    text, extra fields are ignored, and a missing Kafka key is fine (the event names its device).
    """
    text = F.col("value").cast("string")
    # Each step is its own projection: Spark does not share an expression between the branches
    # of a CASE WHEN, and would otherwise parse an event once per reference.
    parsed = records.select("*", F.from_json(text, _TYPED_SCHEMA, _PERMISSIVE).alias("_e"))
    parsed = parsed.select(
        "*",
        *(F.col(f"_e.{name}").alias(f"_{name}") for name in EVENT_FIELDS),
        F.col(f"_e.{_CORRUPT}").isNotNull().alias("_mismatch"),
        F.try_to_timestamp(F.col("_e.ts")).alias("_event_ts"),
    ).drop("_e")
    field = {name: F.col(f"_{name}") for name in EVENT_FIELDS}
    # Only for mismatched records (a CASE branch is evaluated only when taken).
    as_text = F.from_json(text, _TEXT_SCHEMA, _PERMISSIVE)
    text_field = {name: as_text.getField(name) for name in EVENT_FIELDS}

    missing = {name: field[name].isNull() | (F.trim(field[name]) == "") for name in EVENT_FIELDS}
    missing_text = {name: text_field[name].isNull() | (F.trim(text_field[name]) == "") for name in EVENT_FIELDS}
    non_finite = {name: F.isnan(field[name]) | (F.abs(field[name]) == float("inf")) for name in SENSOR_COLUMNS}
    out_of_range = {name: (field[name] < low) | (field[name] > high) for name, (low, high) in SENSOR_BOUNDS.items()}
    # A text value that is not a JSON number: what the typed parse rejected.
    not_a_number = {
        name: ~text_field[name].rlike(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
        | F.col("value").cast("string").rlike(f'"{name}"\\s*:\\s*"')
        for name in SENSOR_COLUMNS
    }

    reason = (
        F.when(F.length("value") > max_event_bytes, F.lit(TOO_LARGE))
        # Spark parses an empty value as an object with no fields; it is no JSON at all.
        .when(F.coalesce(F.length("value"), F.lit(0)) == 0, F.lit(INVALID_JSON))
        .when(F.col("_mismatch") & as_text.getField(_CORRUPT).isNotNull(), F.lit(INVALID_JSON))
        .when(F.col("_mismatch") & _any(missing_text), F.lit(MISSING_FIELD))
        .when(F.col("_mismatch"), F.lit(WRONG_TYPE))
        .when(_any(missing), F.lit(MISSING_FIELD))
        .when(F.col("_event_ts").isNull(), F.lit(BAD_TIMESTAMP))
        .when(_any(non_finite), F.lit(NON_FINITE))
        .when(_any(out_of_range), F.lit(OUT_OF_RANGE))
    )
    parsed = parsed.withColumn("reason", reason)
    reason = F.col("reason")
    detail = (
        F.when(reason == TOO_LARGE, F.format_string(f"event of %d bytes exceeds {max_event_bytes}", F.length("value")))
        .when(reason == INVALID_JSON, F.lit("value is not a JSON object"))
        .when(
            reason == MISSING_FIELD,
            F.concat(
                F.lit("missing or empty: "),
                F.when(F.col("_mismatch"), _names_where(missing_text)).otherwise(_names_where(missing)),
            ),
        )
        .when(reason == WRONG_TYPE, F.concat(F.lit("not a number: "), _names_where(not_a_number)))
        .when(reason == BAD_TIMESTAMP, F.concat(F.lit("ts is not an ISO-8601 time: "), F.substring(field["ts"], 1, 64)))
        .when(reason == NON_FINITE, F.concat(F.lit("NaN or infinite: "), _names_where(non_finite)))
        .when(reason == OUT_OF_RANGE, F.concat(F.lit("physically impossible: "), _names_where(out_of_range)))
    )
    # The original bytes are kept for rejected records only (they go to the dead-letter topic as
    # they came): valid ones live on as typed columns, and a batch is cached without them.
    return parsed.select(
        F.when(reason.isNotNull(), F.col("key")).alias("key"),
        F.when(reason.isNotNull(), F.col("value")).alias("value"),
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_ts"),
        field["event_id"].alias("event_id"),
        field["device_id"].alias("device_id"),
        F.col("_event_ts").alias("ts"),
        *(field[name].alias(name) for name in SENSOR_COLUMNS),
        "reason",
        F.when(reason.isNotNull(), detail).alias("reason_detail"),
    )
