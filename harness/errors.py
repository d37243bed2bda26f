"""Errors shown to the user as one line, exit status 2 (bad names, options or input)."""

import click


class BadInput(click.ClickException):
    """A bad name, option or file given by the user: one line, exit 2, nothing written."""

    exit_code = 2

    def __init__(self, message: str, param_hint: str | None = None):
        super().__init__(f"{param_hint}: {message}" if param_hint else message)
