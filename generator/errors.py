"""The one exception family the library raises; the CLI maps it to exit codes."""

from __future__ import annotations


class GenBundleError(Exception):
    """Base of every error gen-bundle reports to its user."""

    exit_code = 1


class InvalidValue(GenBundleError, ValueError):
    """An input that breaks a rule; nothing has been written when it is raised.

    ``param`` is the keyword argument's name, so the CLI can name the flag.
    """

    exit_code = 2

    def __init__(self, param: str, value: object, rule: str) -> None:
        self.param = param
        self.value = value
        self.rule = rule
        if value is None:
            shown = "none given"
        elif isinstance(value, str) and value.isprintable():
            shown = f"'{value}'"
        else:
            shown = repr(value)
        super().__init__(f"{shown}: {rule}")


class OutputError(GenBundleError):
    """The output directory cannot be written without losing something."""


class EnvBuildError(GenBundleError):
    """The bundle's environment (--env) cannot be built: the resolver, the index or a wheel said
    no. Nothing has been written when it is raised."""


class NotInCache(EnvBuildError):
    """--offline (and check, which fetches nothing unless asked): a wheel the lock pins is not cached.

    Here, not in generator.environment, so that check can tell it apart without importing
    the environment's build code (urllib, zipfile, tomllib) at every run."""


class SigningError(GenBundleError):
    """Signing or verifying failed, or a certificate cannot be read; the bundle is left as it was."""
