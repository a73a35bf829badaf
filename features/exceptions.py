"""What can be wrong with the feature definitions themselves (not with the data they read)."""

from infra.exceptions import ConfigError


class FeatureDefinitionError(ConfigError):
    """A Feast definition the training join cannot execute: a source that is not files, a
    service whose views join on different keys."""
