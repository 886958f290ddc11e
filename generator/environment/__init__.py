"""A locked Python environment for the target, built on the build machine (--env).

The way is: the request (packages, target) -> a lock (uv resolves for the target,
or an earlier bundle's lock is reused) -> the wheels it pins (downloaded once,
cached, each checked against its SHA-256) -> one deterministic archive laid out
as a virtual environment, and an SBOM. install.ps1 only verifies and extracts
the archive: nothing of the environment runs while it is installed.
"""

from __future__ import annotations

from ..errors import EnvBuildError
from .build import BuiltEnv, build_environment
from .target import Target

__all__ = ["BuiltEnv", "EnvBuildError", "Target", "build_environment"]
