"""From a request to a built environment: resolve (or reuse a lock), fetch, lay out."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..bundle_format import ENV_ARCHIVE, ENV_LOCK, ENV_SBOM
from ..constants import CACHE_FOLDER, CACHE_VARIABLE, INSTALL_ROOT, JUPYTER_CORE_MINIMUM
from ..errors import EnvBuildError
from ..packages import NOTEBOOK_PACKAGE
from ..packages import normalize_package as normalize
from ..winpath import MAX_FOLDER_CHARS, MAX_PATH_CHARS
from .archive import install_archive
from .fetch import fetch
from .lock import Pin, lock_text, parse_lock, resolve
from .sbom import cyclonedx, licence_text
from .steps import Progress, Step, no_progress
from .target import Target

# The launcher runs the environment's "python -m notebook"; older jupyter_core loads settings
# from %ProgramData%\jupyter (CVE-2025-30167): a lock must not bring either back.
REQUIRED = {NOTEBOOK_PACKAGE: None, "jupyter-core": JUPYTER_CORE_MINIMUM}


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    licence: str


@dataclass(frozen=True)
class BuiltEnv:
    """The environment's three files of the bundle, and what the README says about them."""

    target: Target
    archive: bytes
    lock: bytes
    sbom: bytes
    packages: tuple[Package, ...]
    files: int
    unpacked_bytes: int
    wheel_bytes: int

    @property
    def archive_sha256(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()

    @property
    def folder(self) -> str:
        """The environment's folder in the install folder: named by the archive, so a new lock
        gets a new folder beside the old one (side by side, then the launcher switches)."""
        return "env-" + self.archive_sha256[:ENV_ID_HEX]

    @property
    def files_of_bundle(self) -> dict[str, bytes]:
        return {ENV_ARCHIVE: self.archive, ENV_LOCK: self.lock, ENV_SBOM: self.sbom}


def default_cache() -> Path:
    """CACHE_VARIABLE's folder, else the user's cache folder (XDG_CACHE_HOME, ~/.cache)."""
    explicit = os.environ.get(CACHE_VARIABLE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / CACHE_FOLDER


def find_uv() -> str:
    """uv from the uv package (gen-bundle[env]), else on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found is None:
        raise EnvBuildError(
            "--env needs uv to resolve the environment: pip install 'gen-bundle[env]' (or put uv on PATH)"
        )
    return found


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"[0-9]+(?:\.[0-9]+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def _check_required(pins: tuple[Pin, ...], source: str) -> None:
    versions = {normalize(pin.name): pin.version for pin in pins}
    for name, minimum in REQUIRED.items():
        if name not in versions:
            raise EnvBuildError(f"{source} does not pin {name}, which the launcher needs")
        if minimum and _release(versions[name]) < _release(minimum):
            raise EnvBuildError(
                f"{source} pins {name} {versions[name]}: before {minimum} it reads settings and kernels from "
                "%ProgramData%\\jupyter for every user (CVE-2025-30167)"
            )


# The names install.ps1 gives an environment's folder: extracted into the first, renamed to
# the second, and to the third while an older one is deleted (templates/engine/environment*.ps1).
ENV_FOLDER_FORMS = (".env-{id}.partial", "env-{id}", ".env-{id}.remove")
# The id: the first hex digits of the archive's SHA-256 (the engine's Get-EnvironmentFolder matches
# exactly this many).
ENV_ID_HEX = 12


def env_folder_prefix(name: str) -> str:
    """The longest folder an environment's files are ever in, on a PC with the usual %ProgramFiles%."""
    forms = [form.format(id="0" * ENV_ID_HEX) for form in ENV_FOLDER_FORMS]
    return INSTALL_ROOT.join(name, max(forms, key=len)).typical() + "\\"


def _check_path_length(longest: str, longest_folder: str, name: str) -> None:
    """The longest paths install.ps1 makes for the environment, below the longest name its folder
    ever has (env_folder_prefix): Windows PowerShell 5.1's file APIs stop at MAX_PATH_CHARS for a
    file, and CreateDirectory at MAX_FOLDER_CHARS for a folder."""
    prefix = env_folder_prefix(name)
    for path, limit, what in ((longest, MAX_PATH_CHARS, "write"), (longest_folder, MAX_FOLDER_CHARS, "create")):
        if len(prefix) + len(path) > limit:
            raise EnvBuildError(
                f"{path} would be {len(prefix) + len(path)} characters long below {prefix}: more than the "
                f"{limit} Windows PowerShell 5.1 can {what}. A shorter --name leaves more room"
            )


def build_environment(
    *,
    requirements: tuple[str, ...],
    target: Target,
    name: str,
    generator_version: str,
    cache: Path | None = None,
    offline: bool = False,
    lock: str | None = None,
    lock_source: str = "the lock",
    progress: Progress = no_progress,
) -> BuiltEnv:
    """Resolve ``requirements`` for ``target`` (or take the pylock.toml text ``lock``), fetch the
    wheels and lay them out. Writes only into the cache; raises EnvBuildError with the reason.
    ``name`` (the bundle's) and ``generator_version`` are what the SBOM says made the environment."""
    cache = cache or default_cache()
    if lock is None:
        progress(Step("resolve"))
        lock = resolve(requirements, target, uv=find_uv(), cache=cache, offline=offline)
        lock_source = f"the resolution for {target.description}"
    pins = parse_lock(lock, target, source=lock_source)
    _check_required(pins, lock_source)
    wheels = fetch(pins, cache=cache, offline=offline, progress=progress)
    progress(Step("layout", count=len(pins)))
    installed = install_archive(pins, wheels, target)
    _check_path_length(installed.longest_path, installed.longest_folder, name)
    archive_sha256 = hashlib.sha256(installed.archive).hexdigest()
    sbom = cyclonedx(
        pins,
        installed.metadata,
        archive_sha256=archive_sha256,
        name=f"{name} notebook environment",
        description=f"{ENV_ARCHIVE}: {len(pins)} packages for {target.description}",
        generator_version=generator_version,
    )
    packages = tuple(Package(pin.name, pin.version, licence_text(installed.metadata[pin.sha256])) for pin in pins)
    return BuiltEnv(
        target=target,
        archive=installed.archive,
        lock=lock_text(pins, target, generator_version),
        sbom=sbom,
        packages=packages,
        files=installed.files,
        unpacked_bytes=installed.unpacked_bytes,
        wheel_bytes=sum(len(wheels[pin.sha256]) for pin in pins),
    )
