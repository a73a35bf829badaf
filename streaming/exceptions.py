"""What ends the streaming job, as opposed to a batch that fails and is run again."""

from infra.exceptions import WardenError


class StreamingError(WardenError):
    """The streaming job cannot go on."""


class StopRequested(StreamingError):
    """Raised into Spark when a batch starts after the job was asked to stop: the batch is left for
    the next driver, not failed."""


class QueryGaveUp(StreamingError):
    """The query failed more times in a row than WARDEN_STREAM_MAX_RESTARTS allows."""
