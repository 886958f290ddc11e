"""A bundle on disk, read back: its files and its bundle.json, for check, diff, sign and --from.

Only what a bundle can hold is read: the regular files of one folder, each within a
size limit, and a bundle.json that is a gen-bundle manifest. Anything else is a reason
to stop (a UsageError: exit 2), not to guess.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle_format import BUNDLE_JSON, MANIFEST_SCHEMA, SHA256SUMS
from .errors import GenBundleError
from .spec import INPUTS, REQUIRED

MAX_MANIFEST_BYTES = 64 * 1024
MAX_FILE_BYTES = 1024 * 1024 * 1024  # an environment's archive is about 60 MB
MAX_BUNDLE_BYTES = 2 * MAX_FILE_BYTES


class NotABundle(GenBundleError):
    """The folder given is not a bundle gen-bundle can read."""

    exit_code = 2


@dataclass(frozen=True)
class Bundle:
    path: Path
    files: dict[str, bytes]  # every regular file of the folder, by name
    others: tuple[str, ...]  # entries that are not regular files (folders, links)
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest.get("version"))

    @property
    def engine(self) -> tuple[str, str] | None:
        """The engine's file name and its SHA-256 as rendered (unsigned), when the bundle has one."""
        engine = self.manifest.get("engine")
        return (engine["file"], engine["sha256"]) if isinstance(engine, dict) else None

    @property
    def inputs(self) -> dict[str, object]:
        return dict(self.manifest.get("inputs") or {})

    @property
    def signature(self) -> dict[str, object] | None:
        signature = self.manifest.get("signature")
        return signature if isinstance(signature, dict) else None

    def sums(self) -> dict[str, str]:
        """SHA256SUMS as name -> digest; an unreadable line is left out (check names the file)."""
        found = {}
        for line in self.files.get(SHA256SUMS, b"").decode("ascii", "replace").splitlines():
            digest, sep, name = line.partition("  ")
            if sep and len(digest) == 64:
                found[name] = digest
        return found


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        # A reader sees the first value, Python's json the last: such a file is not a manifest.
        raise ValueError(f"the key {duplicated[0]!r} appears twice")
    return dict(pairs)


def load_manifest(path: Path) -> dict[str, Any]:
    """bundle.json as any gen-bundle version wrote it: a regular file of a manifest's size, JSON
    without a key written twice, made by gen-bundle. What it holds is read_manifest's to check."""
    if path.parent.is_dir() and not (path.exists() or path.is_symlink()):
        raise NotABundle(f"{path.parent} is not a bundle: it holds no {path.name}")
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MANIFEST_BYTES:
            raise NotABundle(f"{path} is not a bundle.json (not a regular file of at most {MAX_MANIFEST_BYTES} bytes)")
        manifest = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
    except OSError as exc:
        raise NotABundle(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:
        raise NotABundle(f"{path} is not a JSON manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("generator") != "gen-bundle":
        raise NotABundle(f"{path} is not a gen-bundle bundle.json")
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """bundle.json, when it is a regular file of a manifest's size holding a gen-bundle manifest
    that this version reads."""
    manifest = load_manifest(path)
    inputs = manifest.get("inputs")
    if not isinstance(inputs, dict) or not set(inputs) <= set(INPUTS) or not set(REQUIRED) <= set(inputs):
        raise NotABundle(f"{path} does not hold gen-bundle's inputs")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
        raise NotABundle(f"{path}: 'files' is not a list of file names")
    if not isinstance(manifest.get("version"), str):
        raise NotABundle(f"{path}: 'version' is not a version")
    schema = manifest.get("schema", 1)
    if type(schema) is not int or not 1 <= schema <= MANIFEST_SCHEMA:
        raise NotABundle(
            f"{path}: 'schema' {schema!r} is not a bundle.json form this gen-bundle reads "
            f"(1 to {MANIFEST_SCHEMA}; a later gen-bundle made it)"
        )
    engine = manifest.get("engine")
    if "engine" in manifest and not (
        isinstance(engine, dict)
        and set(engine) == {"file", "sha256"}
        and isinstance(engine["file"], str)
        and isinstance(engine["sha256"], str)
    ):
        raise NotABundle(f"{path}: 'engine' is not an engine's file name and SHA-256")
    if "signature" in manifest and not isinstance(manifest["signature"], dict):
        raise NotABundle(f"{path}: 'signature' is not an object")
    return manifest


def read_bundle(folder: str | Path) -> Bundle:
    path = Path(folder)
    if not path.is_dir():
        raise NotABundle(f"{path} is not a folder")
    manifest = read_manifest(path / BUNDLE_JSON)
    files: dict[str, bytes] = {}
    others = []
    total = 0
    for entry in sorted(path.iterdir()):
        info = entry.lstat()
        if not stat.S_ISREG(info.st_mode):
            others.append(entry.name)
            continue
        total += info.st_size
        if info.st_size > MAX_FILE_BYTES or total > MAX_BUNDLE_BYTES:
            raise NotABundle(f"{entry}: larger than a bundle's files can be ({MAX_BUNDLE_BYTES} bytes in all)")
        files[entry.name] = entry.read_bytes()
    return Bundle(path, files, tuple(others), manifest)
