"""A locked Python environment for the target, built on the build machine (--env).

The way is: the request (packages, target) -> a lock (uv resolves for the target,
or an earlier bundle's lock is reused) -> the wheels it pins (downloaded once,
cached, each checked against its SHA-256) -> one deterministic archive laid out
as a virtual environment, and an SBOM. install.ps1 only verifies and extracts
the archive: nothing of the environment runs while it is installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EnvBuildError
from .build import BuiltEnv, build_environment
from .steps import Progress, Step, no_progress
from .target import Target

if TYPE_CHECKING:
    from ..spec import BundleSpec

__all__ = [
    "BuiltEnv",
    "EnvBuildError",
    "Progress",
    "Step",
    "Target",
    "build_environment",
    "build_environment_for",
    "no_progress",
]


def build_environment_for(
    spec: BundleSpec,
    *,
    lock: str | None,
    lock_source: str,
    offline: bool,
    cache: str | os.PathLike[str] | None,
    progress: Progress = no_progress,
) -> BuiltEnv:
    """The spec's environment, for Windows x64 and its CPython version: resolved (or read from
    ``lock``), its wheels fetched (minutes, the first time) and laid out; every package the spec
    asks for pinned."""
    from ..errors import InvalidValue
    from ..packages import normalize_package, requirement_name

    if spec.python_version is None:  # a spec with env has one (BundleSpec checks it)
        raise ValueError("build_environment_for: the spec has no environment")
    built = build_environment(
        requirements=spec.packages,
        target=Target("windows", spec.python_version),
        cache=Path(cache) if cache is not None else None,
        offline=offline,
        lock=lock,
        lock_source=lock_source,
        name=spec.name,
        generator_version=spec.version,
        progress=progress,
    )
    pinned = {normalize_package(package.name) for package in built.packages}
    for requirement in spec.packages:
        if requirement_name(requirement) not in pinned:
            raise InvalidValue(
                "lock",
                lock_source,
                f"does not pin {requirement_name(requirement)}, which --package or --requirements asks for",
            )
    return built
