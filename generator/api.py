"""The library entry point: keyword arguments in, a bundle directory out."""

from __future__ import annotations

from pathlib import Path

from .output import write_bundle
from .render import render
from .spec import DEFAULT_AUTH, DEFAULT_PORT, DEFAULT_SCOPE, DEFAULT_WINDOW, build_spec


def generate(
    *,
    ip: str,
    name: str,
    port: int = DEFAULT_PORT,
    notebook_dir: str | None = None,
    python: str | None = None,
    auth: str = DEFAULT_AUTH,
    window: str = DEFAULT_WINDOW,
    scope: str = DEFAULT_SCOPE,
    user: str | None = None,
    out: str | Path = "out",
    force: bool = False,
) -> Path:
    """Validate, render in memory, then write the bundle atomically to ``out``.

    Raises InvalidValue for bad input and OutputError when ``out`` may not be
    replaced; in both cases nothing has been written.
    """
    spec = build_spec(
        ip=ip, name=name, port=port, notebook_dir=notebook_dir, python=python,
        auth=auth, window=window, scope=scope, user=user,
    )
    out = Path(out)
    write_bundle(render(spec), out, force=force)
    return out
