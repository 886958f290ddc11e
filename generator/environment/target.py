"""Where an environment will run: the platform its wheels are for and its folder layout.

The build code is the same for every target; only these facts differ. Windows x64 is
what bundles ship; a Linux target exists so that the tests can run the very same
archive on this machine (the CI's Python), proving the unpacking complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..spec import CPYTHON_MINOR  # the CPython versions a bundle may name (--python-version)

# Oldest glibc a manylinux wheel may need on the Linux target (Debian 10 and later have 2.28).
LINUX_GLIBC = (2, 28)


@dataclass(frozen=True)
class Target:
    """One target: an OS and CPU, and the CPython minor version of its base install."""

    system: str  # 'windows' or 'linux'
    python_version: str  # '3.13'

    def __post_init__(self) -> None:
        if self.system not in ("windows", "linux") or not re.fullmatch(CPYTHON_MINOR, self.python_version):
            raise ValueError(f"unsupported target {self.system} CPython {self.python_version}")

    @property
    def minor(self) -> int:
        return int(self.python_version.split(".")[1])

    @property
    def description(self) -> str:
        system = "Windows x64" if self.system == "windows" else "Linux x86_64 (manylinux, glibc 2.28)"
        return f"{system}, CPython {self.python_version}"

    @property
    def uv_platform(self) -> str:
        """uv's --python-platform: markers and wheel tags are those of the target, not of this machine."""
        if self.system == "windows":
            return "x86_64-pc-windows-msvc"
        return f"x86_64-manylinux_{LINUX_GLIBC[0]}_{LINUX_GLIBC[1]}"

    @property
    def platforms(self) -> tuple[str, ...]:
        """Wheel platform tags the target runs, best first."""
        if self.system == "windows":
            return ("win_amd64",)
        tags = []
        for glibc_minor in range(LINUX_GLIBC[1], 4, -1):
            tags.append(f"manylinux_2_{glibc_minor}_x86_64")
            legacy = {17: "manylinux2014_x86_64", 12: "manylinux2010_x86_64", 5: "manylinux1_x86_64"}
            if glibc_minor in legacy:
                tags.append(legacy[glibc_minor])
        return tuple(tags)

    def supported_tags(self) -> tuple[tuple[str, str, str], ...]:
        """(python, abi, platform) tags a wheel may carry for this target, most specific first."""
        cp = f"cp3{self.minor}"
        tags: list[tuple[str, str, str]] = []
        for platform in self.platforms:
            tags += [(cp, cp, platform), (cp, "abi3", platform), (cp, "none", platform)]
            tags += [(f"cp3{minor}", "abi3", platform) for minor in range(self.minor - 1, 1, -1)]
        for platform in self.platforms:
            tags += [(f"py3{self.minor}", "none", platform), ("py3", "none", platform)]
            tags += [(f"py3{minor}", "none", platform) for minor in range(self.minor - 1, -1, -1)]
        tags += [(cp, "none", "any"), (f"py3{self.minor}", "none", "any"), ("py3", "none", "any")]
        tags += [(f"py3{minor}", "none", "any") for minor in range(self.minor - 1, -1, -1)]
        return tuple(tags)

    # The virtual environment's layout, relative to its folder (forward slashes, as in the archive).
    @property
    def site_packages(self) -> str:
        if self.system == "windows":
            return "Lib/site-packages"
        return f"lib/python{self.python_version}/site-packages"

    @property
    def scripts(self) -> str:
        return "Scripts" if self.system == "windows" else "bin"

    def headers(self, distribution: str) -> str:
        if self.system == "windows":
            return f"Include/{distribution}"
        return f"include/site/python{self.python_version}/{distribution}"
