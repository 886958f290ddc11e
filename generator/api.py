"""The library entry point: keyword arguments in, a bundle directory out."""

from __future__ import annotations

from pathlib import Path

from .output import write_bundle
from .render import render
from .spec import build_spec


def generate(
    *,
    ip: str,
    name: str,
    port: int | None = None,
    notebook_dir: str | None = None,
    python: str | None = None,
    auth: str | None = None,
    window: str | None = None,
    scope: str | None = None,
    user: str | None = None,
    out: str | Path = "out",
    force: bool = False,
) -> Path:
    """Validate, render in memory, then write the bundle atomically to ``out``.

    An input left as None takes its default from spec.DEFAULTS, the one place
    defaults are written. Raises InvalidValue for bad input and OutputError
    when ``out`` may not be replaced or cannot be written; in both cases
    nothing has been written, and no folder created.
    """
    spec = build_spec(
        ip=ip, name=name, port=port, notebook_dir=notebook_dir, python=python,
        auth=auth, window=window, scope=scope, user=user,
    )
    out = Path(out)
    write_bundle(render(spec), out, force=force)
    return out
