from infra.exceptions import WardenError


class ModelRejected(WardenError):
    """A model version cannot be scored with: it failed to load or to validate."""
