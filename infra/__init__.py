"""Configuration, the embedded local stack, the JVM artifact list and the `warden` command line."""

from infra.exceptions import WardenError
from infra.settings import Settings, load_settings

__all__ = ["Settings", "WardenError", "load_settings"]
