"""The lock: every package of the environment, pinned to one wheel by its SHA-256.

uv resolves for the target (``uv pip compile --python-platform``), so markers are
those of Windows and Windows-only dependencies (pywinpty, colorama) are in; pip's
``download --platform`` would evaluate them for the build machine. uv writes
pylock.toml (PEP 751), which names for each package the wheel for the target, its
address and its SHA-256; that file goes into the bundle as the reviewed lock, and a
later build can take it back (--lock) to rebuild the same environment.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundle_format import ENV_ARCHIVE
from ..errors import EnvBuildError
from ..packages import normalize_package as normalize  # PEP 503: 'Jupyter_Core' and 'jupyter-core' are one
from .target import Target

_SHA256 = re.compile(r"[0-9a-f]{64}")
_WHEEL = re.compile(
    r"(?P<dist>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(?:-(?P<build>[0-9][A-Za-z0-9_.]*))?"
    r"-(?P<py>[A-Za-z0-9_.]+)-(?P<abi>[A-Za-z0-9_.]+)-(?P<platform>[A-Za-z0-9_.]+)\.whl"
)
# The most a lock may pin: a notebook environment has about 90 packages.
MAX_PINS = 2000


@dataclass(frozen=True)
class Pin:
    """One wheel of the environment."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str
    size: int | None


def wheel_filename(url: str) -> str:
    """A wheel's file name, the last part of its address (without a #fragment)."""
    return url.rsplit("/", 1)[-1].split("#", 1)[0]


def wheel_tags(filename: str) -> set[tuple[str, str, str]]:
    """The tags a wheel file name declares (compressed tag sets expanded)."""
    match = _WHEEL.fullmatch(filename)
    if not match:
        return set()
    return {
        (py, abi, platform)
        for py in match["py"].split(".")
        for abi in match["abi"].split(".")
        for platform in match["platform"].split(".")
    }


def best_wheel(wheels: list[Any], ranks: dict[tuple[str, str, str], int]) -> dict[str, Any] | None:
    """Of a package's wheels, the one the target's installer would pick (``ranks``: the target's
    tags, best first); None when none runs there."""
    best, best_rank = None, len(ranks)
    for wheel in wheels:
        url = wheel.get("url") if isinstance(wheel, dict) else None
        if not isinstance(url, str):
            continue
        filename = wheel_filename(url)
        rank = min((ranks[tag] for tag in wheel_tags(filename) if tag in ranks), default=len(ranks))
        if rank < best_rank:
            best, best_rank = wheel, rank
    return best


def parse_lock(text: str, target: Target, *, source: str) -> tuple[Pin, ...]:
    """The pins of a pylock.toml, one wheel each, for ``target``; refused with the reason otherwise."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EnvBuildError(f"{source} is not a pylock.toml file: {exc}") from None
    if str(document.get("lock-version", "")).split(".")[0] != "1":
        raise EnvBuildError(f"{source}: lock-version {document.get('lock-version')!r} is not a PEP 751 lock 1.x")
    packages = document.get("packages")
    if not isinstance(packages, list) or not packages:
        raise EnvBuildError(f"{source} pins no packages")
    if len(packages) > MAX_PINS:
        raise EnvBuildError(f"{source} pins {len(packages)} packages, more than {MAX_PINS}")
    pins: dict[str, Pin] = {}
    ranks = {tag: rank for rank, tag in enumerate(target.supported_tags())}
    for package in packages:
        name = package.get("name") if isinstance(package, dict) else None
        version = package.get("version") if isinstance(package, dict) else None
        if not isinstance(name, str) or not isinstance(version, str):
            raise EnvBuildError(f"{source}: a package without a name and a version: {package!r}")
        label = f"{name} {version}"
        wheel = best_wheel(package.get("wheels") or [], ranks)
        if wheel is None:
            has_sdist = "sdist" in package
            raise EnvBuildError(
                f"{source}: {label} has no wheel for {target.description}"
                + (" (only a source distribution, which gen-bundle never builds)" if has_sdist else "")
            )
        url = wheel["url"]
        if not url.startswith(("https://", "http://")):
            raise EnvBuildError(f"{source}: {label}: the wheel's address {url!r} is not http(s)")
        digest = (wheel.get("hashes") or {}).get("sha256")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise EnvBuildError(f"{source}: {label}: the wheel has no SHA-256 in the lock")
        size = wheel.get("size")
        filename = wheel_filename(url)
        key = normalize(name)
        if key in pins:
            raise EnvBuildError(f"{source}: {name} is pinned twice")
        pins[key] = Pin(name, version, filename, url, digest, size if isinstance(size, int) else None)
    return tuple(pins[key] for key in sorted(pins))


def resolve(requirements: tuple[str, ...], target: Target, *, uv: str, cache: Path, offline: bool) -> str:
    """Resolve ``requirements`` for ``target`` with uv; the pylock.toml text it writes.

    Wheels only (--only-binary :all:): nothing is built, so nothing of a package runs
    on the build machine either. uv's own cache lives in gen-bundle's cache folder.
    """
    command = [
        uv,
        "pip",
        "compile",
        "-",
        "--python-platform",
        target.uv_platform,
        "--python-version",
        target.python_version,
        "--only-binary",
        ":all:",
        "--format",
        "pylock.toml",
        "--no-header",
        "--quiet",
        "--cache-dir",
        str(cache / "uv"),
    ]
    if offline:
        command.append("--offline")
    try:
        done = subprocess.run(
            command, input="\n".join(requirements) + "\n", capture_output=True, text=True, check=False, timeout=900
        )
    except OSError as exc:
        raise EnvBuildError(f"cannot run uv ({uv}): {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise EnvBuildError("uv did not finish resolving the environment within 15 minutes") from None
    if done.returncode != 0:
        raise EnvBuildError(explain_uv_failure(done.stderr, target, offline=offline))
    return done.stdout


def explain_uv_failure(stderr: str, target: Target, *, offline: bool) -> str:
    """uv's own explanation, introduced by what gen-bundle was doing and what to check."""
    detail = "\n".join("  " + line for line in stderr.strip().splitlines()[:40]) or "  (uv printed nothing)"
    if "network was disabled" in stderr or ("not found in the cache" in stderr and offline):
        hint = "--offline: the cache does not hold all of it yet; build once with the network first"
    elif "Failed to fetch" in stderr or "error sending request" in stderr or "dns error" in stderr:
        hint = "the package index cannot be reached: check the network, or UV_INDEX_URL for a mirror"
    elif "not found in the package registry" in stderr:
        hint = "a package named in --package or --requirements does not exist on the index"
    elif "no wheels" in stderr or "no usable wheels" in stderr or "no matching" in stderr:
        hint = f"a package has no wheel for {target.description}, and gen-bundle installs wheels only"
    else:
        hint = "the packages cannot be resolved together"
    return f"cannot resolve the environment for {target.description}: {hint}. uv said:\n{detail}"


def lock_text(pins: tuple[Pin, ...], target: Target, generator_version: str) -> bytes:
    """The bundle's lock (PEP 751 pylock.toml): exactly the wheels in the archive."""
    lines = [
        f"# gen-bundle {generator_version}: the lock of {ENV_ARCHIVE}, for {target.description}.",
        "# Each package is pinned to one wheel by its SHA-256. The same archive, byte for byte:",
        "#   gen-bundle <the inputs in bundle.json> --lock pylock.toml",
        'lock-version = "1.0"',
        'created-by = "gen-bundle"',
        f'requires-python = "=={target.python_version}.*"',
    ]
    for pin in pins:
        wheel = f"name = {json.dumps(pin.filename)}, url = {json.dumps(pin.url)}"
        if pin.size is not None:
            wheel += f", size = {pin.size}"
        wheel += f", hashes = {{ sha256 = {json.dumps(pin.sha256)} }}"
        lines += [
            "",
            "[[packages]]",
            f"name = {json.dumps(pin.name)}",
            f"version = {json.dumps(pin.version)}",
            f"wheels = [{{ {wheel} }}]",
        ]
    return ("\n".join(lines) + "\n").encode("ascii")
