"""The library entry point: keyword arguments in, a bundle directory out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidValue
from .inputs import OUT
from .output import StrPath, check_target, write_bundle
from .render import render
from .spec import build_spec

if TYPE_CHECKING:
    from .environment import Step

# A requirements file or a lock is text of a few hundred KiB at most.
MAX_INPUT_FILE_BYTES = 16 * 1024 * 1024


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
    (``spec.DEFAULTS``). The other keywords are the build's options (generator/inputs.py):
    ``requirements`` is a file of packages, one per line, added to ``packages``; ``lock`` an
    earlier bundle's pylock.toml to build the same environment from; ``progress`` is told each
    step of the environment's build (a ``generator.environment.Step``: resolving, each wheel and
    its bytes, laying out). Raises InvalidValue for bad input, EnvBuildError when the
    environment cannot be built and OutputError when ``out`` may not be replaced or cannot be
    written; in every case nothing has been written, and no folder created.
    """
    if requirements is not None:
        inputs["packages"] = [*(inputs.get("packages") or ()), *read_requirements(requirements)]
    if not inputs.get("env") and (lock is not None or offline):
        raise InvalidValue("lock" if lock is not None else "offline", str(lock or "--offline"), "goes with --env only")
    spec = build_spec(**inputs)
    lock_text = _read_text("lock", lock) if lock is not None else None
    out = os.fspath(out)
    check_target(os.path.abspath(out), force=force)  # before minutes of downloads, not after
    built = None
    if spec.env:
        from .environment import build_environment_for, no_progress  # here: only --env needs its code

        built = build_environment_for(
            spec, lock=lock_text, lock_source=str(lock), offline=offline, cache=cache, progress=progress or no_progress
        )
    write_bundle(render(spec, env=built), out, force=force)
    return Path(out)


def _read_text(param: str, path: StrPath) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INPUT_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidValue(param, str(path), f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_FILE_BYTES:
        raise InvalidValue(param, str(path), f"is larger than {MAX_INPUT_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidValue(param, str(path), "is not UTF-8 text") from None


def read_requirements(path: StrPath) -> list[str]:
    """The packages of a requirements file: one per line, '#' comments and blank lines ignored.

    Only package requirements: a line with an option (-r, --index-url, -e), a URL, a
    path or a marker is refused, naming the file and line, rather than passed on.
    """
    from .spec import parse_package

    packages = []
    for number, line in enumerate(_read_text("requirements", path).splitlines(), start=1):
        text = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not text:
            continue
        try:
            packages.append(parse_package(text, param="requirements"))
        except InvalidValue as exc:
            raise InvalidValue("requirements", f"{path}:{number}: {text}", exc.rule) from None
    return packages
