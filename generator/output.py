"""Writing a rendered bundle: all of it or nothing, and never over foreign files."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .bundle_format import BUNDLE_JSON
from .errors import OutputError


def _holds_previous_bundle(out: Path) -> bool:
    """True when every entry in ``out`` is a file an earlier bundle.json lists.

    bundle.json is loaded as check loads it (bundle.load_manifest): only a regular file of a
    manifest's size, without a key written twice - a link, a FIFO or a huge file there is not
    an earlier bundle, and must not hang or exhaust this run. A bundle of any gen-bundle version
    counts, a later one's too.
    """
    from .bundle import NotABundle, load_manifest

    try:
        listed = load_manifest(out / BUNDLE_JSON).get("files")
    except NotABundle:
        return False
    if not isinstance(listed, list):
        return False
    for entry in out.iterdir():
        if entry.name not in listed or entry.is_symlink() or not entry.is_file():
            return False
    return True


def check_target(out: Path, *, force: bool) -> None:
    """Refuse, before anything is written, to replace what is not ours to replace."""
    if out.is_symlink():
        raise OutputError(f"{out} is a symbolic link; give the real directory as --out")
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not _holds_previous_bundle(out):
        raise OutputError(
            f"{out} holds files that gen-bundle did not write; it is left as it was "
            "(choose another --out, or empty it yourself)"
        )
    if not force:
        raise OutputError(f"{out} holds a bundle from an earlier run; pass --force to replace it")


def write_bundle(files: Mapping[str, bytes], out: Path, *, force: bool = False) -> None:
    """Write ``files`` into ``out`` atomically: a directory beside it, then a rename.

    A reader of ``out`` sees the old bundle or the new one, never a mix; a
    failure part-way leaves ``out`` as it was, and removes the parent folders
    this run created. Any OSError becomes an OutputError naming the path.
    """
    out = Path(out)
    target = Path(os.path.abspath(out))  # '..' folded as the user means it, not as a folder to make
    created: list[Path] = []  # the parent folders this run made, outermost first
    try:
        check_target(target, force=force)
        _make_parents(target.parent, created)
        _write(files, target)
    except BaseException as exc:
        _remove_empty(created)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write the bundle to {out}: {_reason(exc, target)}") from exc
        raise


def _reason(exc: OSError, out: Path) -> str:
    """Why a write failed, naming the file it failed on unless that is one of this write's own
    staging folders (``.<out>.new-*``, ``.<out>.old-*``), which the user never asked for."""
    reason = exc.strerror or str(exc)
    if exc.filename is not None and not any(
        part.startswith((f".{out.name}.new-", f".{out.name}.old-")) for part in Path(str(exc.filename)).parts
    ):
        reason += f": {exc.filename}"
    return reason


def _make_parents(folder: Path, created: list[Path]) -> None:
    """Create ``folder`` and its missing parents, adding each to ``created`` as it is made."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            break
        if candidate.exists() or candidate.is_symlink():
            raise OutputError(f"cannot write the bundle below {candidate}: it is not a directory")
        missing.append(candidate)
    for candidate in reversed(missing):
        candidate.mkdir()
        created.append(candidate)


def _remove_empty(created: list[Path]) -> None:
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return  # something else is in it now: leave it, and its parents


def _write(files: Mapping[str, bytes], out: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide the bundle from reviewers
        for name, data in files.items():
            with open(staging / name, "xb") as handle:
                handle.write(data)
        if out.exists():
            _swap(staging, out)
        else:
            os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap(staging: Path, out: Path) -> None:
    """Replace the directory ``out`` by ``staging``; on failure put ``out`` back."""
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=staging.parent))
    old = retired / "bundle"
    try:
        os.rename(out, old)
        try:
            os.rename(staging, out)
        except BaseException:
            os.rename(old, out)
            raise
    finally:
        if not old.exists() or out.exists():
            shutil.rmtree(retired, ignore_errors=True)
