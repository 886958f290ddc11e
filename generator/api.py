"""The library entry point: keyword arguments in, a bundle directory out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidValue
from .options import BUILD_OPTIONS, OUT
from .output import StrPath, check_target, write_bundle
from .render import render
from .spec import build_spec

if TYPE_CHECKING:
    from .environment import Step


def generate(
    *,
    requirements: StrPath | None = None,
    lock: StrPath | None = None,
    offline: bool = False,
    out: StrPath = OUT,
    force: bool = False,
    cache: StrPath | None = None,
    progress: Callable[[Step], None] | None = None,
    **inputs: Any,
) -> Path:
    """Validate, build the environment (with ``env``), render in memory, then write the bundle
    atomically to ``out``; return ``out``.

    ``inputs`` are the bundle's inputs, named as BundleSpec's input fields (``spec.INPUTS``:
    ip, name, port, ...; the command line's flags with "_" for "-", and ``packages`` for
    --package): ``ip`` and ``name`` are required, and one left out or None takes its default
    (``spec.DEFAULTS``). The other keywords are the build's options (generator/options.py):
    ``requirements`` is a file of packages, one per line, added to ``packages``; ``lock`` an
    earlier bundle's pylock.toml to build the same environment from; ``progress`` is told each
    step of the environment's build (a ``generator.environment.Step``: resolving, each wheel and
    its bytes, laying out). Raises InvalidValue for bad input, EnvBuildError when the
    environment cannot be built and OutputError when ``out`` may not be replaced or cannot be
    written; in every case nothing has been written, and no folder created.
    """
    spec = build_spec(**inputs)  # first: the inputs come before the build's options in --help
    given = {"requirements": requirements, "lock": lock, "offline": offline}
    for name, option in BUILD_OPTIONS.items():
        if option.needs_env and not spec.env and option.given(given.get(name)):
            raise InvalidValue(name, option.flag if option.switch else str(given.get(name)), "goes with --env only")
    out = os.fspath(out)
    if not out.strip():
        raise InvalidValue("out", out, "must name a folder (an empty one would mean the current one)")
    lock_text = None
    if requirements is not None or lock is not None:
        from .packages import read_input_file, read_requirements  # here: only --env reads these files

        if requirements is not None:
            spec = spec.replace(packages=(*spec.packages, *read_requirements(requirements)))
        if lock is not None:
            lock_text = read_input_file("lock", lock)
    check_target(os.path.abspath(out), force=force)  # before minutes of downloads, not after
    built = None
    if spec.env:
        from .environment import build_environment_for, no_progress  # here: only --env needs its code

        built = build_environment_for(
            spec, lock=lock_text, lock_source=str(lock), offline=offline, cache=cache, progress=progress or no_progress
        )
    write_bundle(render(spec, env=built), out, force=force)
    return Path(out)
