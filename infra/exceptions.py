"""The root of streamwarden's errors: anything a user can cause or fix is a WardenError.

The CLI prints a WardenError as one line and exits non-zero, and so a client library's error
whose cause is a connection that failed (a service that stopped during the command); anything
else is a bug and keeps its traceback.
"""


class WardenError(Exception):
    """A problem the user can act on; its message names the object, what was expected and what to do."""


class ConfigError(WardenError):
    """A setting has a value that cannot work."""


class ServiceError(WardenError):
    """An embedded service could not be started, reached or stopped."""


class PortInUseError(ServiceError):
    """A port that an embedded service needs is held by another process."""


class LakeError(WardenError):
    """The lake root cannot be reached or written."""


class BusyError(WardenError):
    """Another run holds a lock this one needs, for longer than it may wait."""
