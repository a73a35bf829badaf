from infra.exceptions import WardenError


class ModelRejected(WardenError):
    """A model version cannot be scored with: it failed to load or to validate."""


class PromotionRefused(WardenError):
    """A promotion that may not happen as asked: a version the gate refused, without an override."""
