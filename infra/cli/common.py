"""What every `warden` command shares: the settings the group read once for the command."""

from __future__ import annotations

import click

from infra.settings import Settings

# `@pass_settings` hands a command the group's settings as its first argument.
pass_settings = click.make_pass_decorator(Settings)
