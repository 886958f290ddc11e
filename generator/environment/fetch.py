"""The wheels a lock pins: from the cache when there, else downloaded once; always checked.

The cache keys each wheel by its SHA-256, so a cached file is used only for the pin
that names that digest, and it is hashed again when read: a changed cache file is
downloaded anew. A second build from a warm cache sends no request at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import EnvBuildError, NotInCache
from .lock import Pin
from .steps import Progress, Step, no_progress

# A wheel larger than this is not one the notebook environment needs (the largest is about 10 MB).
MAX_WHEEL_BYTES = 512 * 1024 * 1024
TIMEOUT_SECONDS = 120
CHUNK_BYTES = 256 * 1024


def cached_path(cache: Path, pin: Pin) -> Path:
    return cache / "wheels" / pin.sha256[:2] / pin.sha256 / pin.filename


def fetch(pins: tuple[Pin, ...], *, cache: Path, offline: bool, progress: Progress = no_progress) -> dict[str, bytes]:
    """SHA-256 -> the wheel's bytes, for every pin; each one matches its pin's digest."""
    wheels: dict[str, bytes] = {}
    for index, pin in enumerate(pins, start=1):
        path = cached_path(cache, pin)
        data = _read_cached(path, pin)
        cached = data is not None
        if data is None:
            if offline:
                raise NotInCache(
                    f"--offline: {pin.filename} ({pin.name} {pin.version}) is not in the cache {cache}; "
                    "build once with the network first"
                )
            data = _download(pin, _Received(progress, Step("wheel", index, len(pins), pin.name, pin.version)))
            _store(path, data)
        progress(Step("wheel-done", index, len(pins), pin.name, pin.version, len(data), len(data), cached))
        wheels[pin.sha256] = data
    return wheels


class _Received:
    """Tells ``progress`` the bytes of one wheel's download so far, as that wheel's step."""

    def __init__(self, progress: Progress, step: Step) -> None:
        self.progress, self.step = progress, step

    def __call__(self, received: int, size: int | None) -> None:
        self.progress(dataclasses.replace(self.step, received=received, size=size))


def _read_cached(path: Path, pin: Pin) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == pin.sha256 else None


def _download(pin: Pin, received: Callable[[int, int | None], None]) -> bytes:
    """The wheel's bytes, read in chunks; ``received`` is told the bytes so far, and the size
    when the lock or the server says it, after each."""
    request = urllib.request.Request(pin.url, headers={"User-Agent": "gen-bundle"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (http(s) only: lock.py)
            length = response.headers.get("Content-Length")
            size = pin.size if pin.size is not None else int(length) if length and length.isdigit() else None
            chunks: list[bytes] = []
            count = 0
            while count <= MAX_WHEEL_BYTES:
                chunk = response.read(min(CHUNK_BYTES, MAX_WHEEL_BYTES + 1 - count))
                if not chunk:
                    break
                chunks.append(chunk)
                count += len(chunk)
                received(count, size)
            data = b"".join(chunks)
    except urllib.error.HTTPError as exc:
        raise EnvBuildError(
            f"cannot download {pin.filename} ({pin.name} {pin.version}): {exc.code} {exc.reason} from {pin.url}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise EnvBuildError(
            f"cannot download {pin.filename} ({pin.name} {pin.version}) from {pin.url}: {reason}. "
            "Check the network; a build with a warm cache (see --offline) needs none"
        ) from None
    if len(data) > MAX_WHEEL_BYTES:
        raise EnvBuildError(f"{pin.filename} is larger than {MAX_WHEEL_BYTES} bytes; refused")
    digest = hashlib.sha256(data).hexdigest()
    if digest != pin.sha256:
        raise EnvBuildError(
            f"{pin.filename} ({pin.name} {pin.version}) does not match its lock: SHA-256 {digest}, "
            f"the lock pins {pin.sha256}. The file at {pin.url} is not the one that was locked; nothing was written"
        )
    if pin.size is not None and len(data) != pin.size:
        raise EnvBuildError(f"{pin.filename}: {len(data)} bytes, the lock says {pin.size}")
    return data


def _store(path: Path, data: bytes) -> None:
    """Write atomically; a cache that cannot be written only costs the next build a download."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except OSError:
        pass
