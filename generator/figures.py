"""What the bundle README measures of the other files of its bundle, for its reviewer.

The README is rendered last: these read the bytes rendered before it, so each figure is the
bundle's own, counted, not a number written by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .bundle_format import ENV_ARCHIVE


def of(files: Mapping[str, bytes], *, engine: str) -> dict[str, Callable[..., Any]]:
    """The README template's measuring functions, over ``files`` as they are when it renders."""
    return {
        "lines": lambda name: line_count(files[name]),
        "engine_parts": lambda: engine_parts(files[engine]),
        "read_bytes": lambda: read_bytes(files, engine=engine),
    }


def read_bytes(files: Mapping[str, bytes], *, engine: str) -> int:
    """What a run that extracts nothing reads of the bundle: each file once, less the
    environment's archive, and install.ps1 and the engine twice (to run them, and against
    SHA256SUMS)."""
    return (
        sum(len(data) for name, data in files.items() if name != ENV_ARCHIVE)
        + len(files["install.ps1"])
        + len(files[engine])
    )


def line_count(data: bytes) -> int:
    """The lines of a rendered text file, whatever its encoding: what the README tells a reviewer.

    In UTF-8 a newline is the byte 0x0A and no other character holds that byte, so the lines
    are counted without decoding the file (the engine is some 100 KB)."""
    if data.startswith(b"\xff\xfe"):
        return data.decode("utf-16").count("\n")
    return data.count(b"\n")


def engine_parts(data: bytes) -> list[tuple[str, str, int, int]]:
    """The engine's parts as (name, what it holds, first line, last line): each opens with a
    ``# ---- name: what ----`` line, so the README says where each is and how long, measured.

    Read as bytes, a heading found and its line counted by byte searches: the engine is some
    100 KB, and decoding and splitting it costs more than the rest of the README."""
    body = data.removeprefix(b"\xef\xbb\xbf")
    heads: list[tuple[int, str, str]] = []
    starts = [0] if body.startswith(b"# ---- ") else []
    found = body.find(b"\n# ---- ")
    while found >= 0:
        starts.append(found + 1)
        found = body.find(b"\n# ---- ", found + 1)
    number, counted = 1, 0  # the line number of body[counted:]'s first line
    for start in starts:
        number += body.count(b"\n", counted, start)
        counted = start
        end = body.find(b"\n", start)
        line = body[start : end if end >= 0 else len(body)].decode("utf-8").rstrip("\r")
        name, _, what = line[len("# ---- ") :].removesuffix(" ----").partition(": ")
        heads.append((number, name, what))
    ends = [head[0] - 1 for head in heads[1:]] + [line_count(data)]
    return [("constants", "the same in every bundle of this version, and the exit codes", 1, heads[0][0] - 1)] + [
        (name, what, start, end) for (start, name, what), end in zip(heads, ends, strict=True)
    ]


def size_mb(count: int) -> str:
    """57159404 -> '57.2 MB': an environment's size as download tools print it."""
    return f"{count / 1e6:.1f} MB"


def size(count: int) -> str:
    """1048576 -> '1 MiB': the README says sizes the way people read them."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= factor and count % factor == 0:
            return f"{count // factor} {unit}"
    return f"{count} bytes"
