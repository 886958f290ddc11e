"""Writing a rendered bundle: all of it or nothing, and never over foreign files.

Paths here are strings and os.path: every step is a rename or a removal of a whole folder,
which os and shutil name directly.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Mapping

from .bundle_format import BUNDLE_JSON
from .errors import OutputError

StrPath = str | os.PathLike[str]


def share_as_umask(path: StrPath, mode: int) -> None:
    """Give ``path``, made private by mkdtemp or mkstemp, the mode a plain mkdir or open would
    have: ``mode`` less the umask, so that other reviewers of the machine read what was written.

    The umask can only be read by setting it: set and restored at once."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _holds_previous_bundle(out: str) -> bool:
    """True when every entry in ``out`` is a file an earlier bundle.json lists.

    bundle.json is loaded as check loads it (bundle.load_manifest): only a regular file of a
    manifest's size, without a key written twice - a link, a FIFO or a huge file there is not
    an earlier bundle, and must not hang or exhaust this run. A bundle of any gen-bundle version
    counts, a later one's too.
    """
    from pathlib import Path

    from .bundle import NotABundle, load_manifest

    try:
        listed = load_manifest(Path(out, BUNDLE_JSON)).get("files")
    except NotABundle:
        return False
    if not isinstance(listed, list):
        return False
    with os.scandir(out) as entries:
        return all(entry.name in listed and entry.is_file(follow_symlinks=False) for entry in entries)


def check_target(out: StrPath, *, force: bool) -> None:
    """Refuse, before anything is written, to replace what is not ours to replace."""
    out = os.fspath(out)
    try:
        info = os.lstat(out)
    except (FileNotFoundError, NotADirectoryError):  # nothing there; a file above is _make_parents' to name
        return
    if stat.S_ISLNK(info.st_mode):
        raise OutputError(f"{out} is a symbolic link; give the real directory as --out")
    if not stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{out} exists and is not a directory")
    if not os.listdir(out):
        return
    if not _holds_previous_bundle(out):
        raise OutputError(
            f"{out} holds files that gen-bundle did not write; it is left as it was "
            "(choose another --out, or empty it yourself)"
        )
    if not force:
        raise OutputError(f"{out} holds a bundle from an earlier run; pass --force to replace it")


def write_bundle(files: Mapping[str, bytes], out: StrPath, *, force: bool = False) -> None:
    """Write ``files`` into ``out`` atomically: a directory beside it, then a rename.

    A reader of ``out`` sees the old bundle or the new one, never a mix; a
    failure part-way leaves ``out`` as it was, and removes the parent folders
    this run created. Any OSError becomes an OutputError naming the path.
    """
    out = os.fspath(out)
    target = os.path.abspath(out)  # '..' folded as the user means it, not as a folder to make
    created: list[str] = []  # the parent folders this run made, outermost first
    try:
        check_target(target, force=force)
        _make_parents(os.path.dirname(target), created)
        _write(files, target)
    except BaseException as exc:
        _remove_empty(created)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write the bundle to {out}: {_reason(exc, target)}") from exc
        raise


def _reason(exc: OSError, out: StrPath) -> str:
    """Why a write failed, naming the file it failed on unless that is one of this write's own
    staging folders (``.<out>.new-*``, ``.<out>.old-*``), which the user never asked for."""
    reason = exc.strerror or str(exc)
    name = os.path.basename(out)
    if exc.filename is not None and not any(
        part.startswith((f".{name}.new-", f".{name}.old-")) for part in os.fspath(exc.filename).split(os.sep)
    ):
        reason += f": {exc.filename}"
    return reason


def _make_parents(folder: str, created: list[str]) -> None:
    """Create ``folder`` and its missing parents, adding each to ``created`` as it is made."""
    missing = []
    candidate = folder
    while not os.path.isdir(candidate):
        if os.path.lexists(candidate):
            raise OutputError(f"cannot write the bundle below {candidate}: it is not a directory")
        missing.append(candidate)
        if os.path.dirname(candidate) == candidate:
            break  # a root that is not there (Windows: Z:\ of no drive, a share out of reach): mkdir says so
        candidate = os.path.dirname(candidate)
    for candidate in reversed(missing):
        os.mkdir(candidate)
        created.append(candidate)


def _remove_empty(created: list[str]) -> None:
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:
            return  # something else is in it now: leave it, and its parents


def _write(files: Mapping[str, bytes], out: str) -> None:
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.new-", dir=os.path.dirname(out))
    try:
        share_as_umask(staging, 0o777)  # mkdtemp's 0700 would hide the bundle from reviewers
        for name, data in files.items():
            with open(os.path.join(staging, name), "xb") as handle:
                handle.write(data)
        if os.path.exists(out):
            _swap(staging, out)
        else:
            os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap(staging: str, out: str) -> None:
    """Replace the directory ``out`` by ``staging``; on failure put ``out`` back."""
    retired = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(staging))
    old = os.path.join(retired, "bundle")
    try:
        os.rename(out, old)
        try:
            os.rename(staging, out)
        except BaseException:
            os.rename(old, out)
            raise
    finally:
        if not os.path.exists(old) or os.path.exists(out):
            shutil.rmtree(retired, ignore_errors=True)


def write_file(data: bytes, folder: StrPath, name: str) -> None:
    """One file, written whole or not at all, into ``folder`` (made when missing): a file of that
    name with other bytes is left alone (OutputError), one with the same bytes is left as it is."""
    from pathlib import Path

    target = Path(folder, name)
    try:
        if target.exists() and target.read_bytes() != data:
            raise OutputError(f"{target} exists and holds other bytes: nothing was written")
        Path(folder).mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            share_as_umask(staging, 0o666)  # mkstemp's 0600 would hide it from other reviewers
            os.replace(staging, target)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
