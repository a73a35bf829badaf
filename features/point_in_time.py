"""Feast's point-in-time join, executed by Spark where the data is.

Feast's file offline store joins in pandas and Dask in one process: for a week of a fleet it
builds every (entity row, feature row) pair of a device before filtering them by time, and a
200-device week took 20 GB (issue 22). This join asks Feast only for its definitions (each
view's source, timestamp field, TTL and features) and lets Spark do the work, with Feast's
semantics: per entity row, the feature row with the newest timestamp at or before the row's
timestamp, and not older than the view's TTL when it has one.

It is an as-of merge, not a range join: the entity rows and the feature rows of a device are
sorted together by time, and each entity row takes the last feature row before it. The work
grows with the rows, never with their pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import Window as SparkWindow
from pyspark.sql import functions as F

from features.exceptions import FeatureDefinitionError

if TYPE_CHECKING:
    from feast import FeatureStore

_TIME, _IS_ENTITY, _FOUND, _FEATURE_TIME = "_pit_time", "_pit_is_entity", "_pit_found", "_pit_feature_time"


def historical_features(
    spark: SparkSession,
    store: FeatureStore,
    service: str,
    entities: DataFrame,
    timestamp: str,
    spark_url: Callable[[str], str],
) -> DataFrame:
    """`entities` with every feature of the feature service `service`, as of each row's
    `timestamp`; a row without a feature row in reach gets nulls (a left join, as Feast's).

    `spark_url` turns a source's path, as Feast's Python readers address it, into Spark's."""
    from feast import FileSource

    key = key_of(store, service)
    keys = entities.select(key, timestamp).distinct()
    found = keys
    for projection in store.get_feature_service(service).feature_view_projections:
        view = store.get_feature_view(projection.name)
        features = [field.name for field in projection.features]
        source = view.batch_source
        if not isinstance(source, FileSource):
            raise FeatureDefinitionError(
                f"feature view {view.name} reads {type(source).__name__}; the training join reads files"
            )
        rows = spark.read.parquet(spark_url(source.path)).select(
            F.col(key), F.col(source.timestamp_field).alias(_TIME), *(F.col(name) for name in features)
        )
        ttl_seconds = int(view.ttl.total_seconds()) if view.ttl else 0
        found = found.join(as_of(keys, rows, key, timestamp, features, ttl_seconds), [key, timestamp], "left")
    # The views' answers meet on the distinct keys first: the entity rows are joined once.
    return entities.join(found, [key, timestamp], "left")


def key_of(store: FeatureStore, service: str) -> str:
    """The one join key every view of the feature service shares (the device)."""
    keys = {
        key
        for projection in store.get_feature_service(service).feature_view_projections
        for key in store.get_feature_view(projection.name).join_keys
    }
    if len(keys) != 1:
        raise FeatureDefinitionError(
            f"the feature service {service} joins on {sorted(keys)}; the training join needs one key"
        )
    return keys.pop()


def as_of(
    entities: DataFrame, rows: DataFrame, key: str, timestamp: str, features: list[str], ttl_seconds: int
) -> DataFrame:
    """Per distinct (`key`, `timestamp`) of `entities`, the `features` of the newest row of
    `rows` (keyed by `key`, timed by `_pit_time`) at or before it, within `ttl_seconds` (0: no
    limit)."""
    record = F.struct(F.col(_TIME).alias(_FEATURE_TIME), *(F.col(name) for name in features))
    feature_rows = rows.select(key, _TIME, F.lit(0).alias(_IS_ENTITY), record.alias(_FOUND))
    entity_rows = entities.select(
        key,
        F.col(timestamp).alias(_TIME),
        F.lit(1).alias(_IS_ENTITY),
        F.lit(None).cast(feature_rows.schema[_FOUND].dataType).alias(_FOUND),
    )
    # At the same instant a feature row sorts first: "at or before" includes the instant itself.
    so_far = SparkWindow.partitionBy(key).orderBy(_TIME, _IS_ENTITY).rowsBetween(SparkWindow.unboundedPreceding, 0)
    merged = (
        feature_rows.unionByName(entity_rows)
        .withColumn(_FOUND, F.last(_FOUND, ignorenulls=True).over(so_far))
        .where(F.col(_IS_ENTITY) == 1)
    )
    if ttl_seconds:
        in_reach = F.col(f"{_FOUND}.{_FEATURE_TIME}") >= F.col(_TIME) - F.expr(f"INTERVAL {ttl_seconds} SECONDS")
        merged = merged.withColumn(_FOUND, F.when(in_reach, F.col(_FOUND)))
    return merged.select(
        key, F.col(_TIME).alias(timestamp), *(F.col(f"{_FOUND}.{name}").alias(name) for name in features)
    )
