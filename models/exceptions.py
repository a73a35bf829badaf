"""What can go wrong with a model: a version that is missing, not ready, unusable, or not to be promoted."""

from infra.exceptions import WardenError


class ModelError(WardenError):
    """A registered model or one of its versions cannot be used as asked."""


class VersionNotFound(ModelError):
    """The registry has no such version of the model."""


class VersionNotReady(ModelError):
    """The version exists but its registration did not finish (or failed)."""


class ModelRejected(ModelError):
    """A model version cannot be scored with: it failed to load or to validate."""


class PromotionRefused(ModelError):
    """A decision that may not be recorded as asked: no one named as deciding, or a version the gate
    refused promoted without an override."""
