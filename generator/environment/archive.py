"""The wheels laid out as a virtual environment, in one deterministic zip archive.

Each wheel is installed as the wheel format says (purelib and platlib into
site-packages, ``.data/data`` into the environment's folder, ``.data/scripts`` into
Scripts, ``.data/headers`` into Include), here on the build machine, so that
install.ps1 only extracts files and never runs an installer.

The archive's bytes are a function of the wheels' bytes alone: entries in sorted
order, each one's date the wheel's own, and each file's compressed data copied as it
is in the wheel (not compressed again, so no zlib version can change a byte). Only
the files an installer writes (RECORD, INSTALLER) are new, and they are stored.
"""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
import struct
import zipfile
import zlib
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser

from ..errors import EnvBuildError
from ..winpath import FORBIDDEN_CHARS, is_reserved_name
from .lock import Pin
from .target import Target

# Names Windows cannot hold (the environment is extracted there), checked for every entry.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the entries gen-bundle writes itself
MAX_ENTRIES = 65535  # without zip64, which .NET's reader and Python's both handle, but is not needed here
MAX_ARCHIVE_BYTES = 0xFFFFFFFF
INSTALLER = b"gen-bundle\n"


@dataclass(frozen=True)
class Entry:
    """One file of the archive: where it goes and its bytes as they travel (compressed or not)."""

    path: str
    method: int  # zipfile.ZIP_STORED or ZIP_DEFLATED
    data: bytes
    crc: int
    size: int
    date_time: tuple[int, int, int, int, int, int]
    source: str  # the wheel it came from, for error messages


@dataclass(frozen=True)
class Installed:
    """What the archive holds, for the SBOM and the README."""

    archive: bytes
    files: int
    unpacked_bytes: int
    longest_path: str  # the longest file name, and the longest folder name, below the environment
    longest_folder: str
    metadata: dict[str, Message]  # by the pin's SHA-256


def _raw(wheel: zipfile.ZipFile, info: zipfile.ZipInfo, raw: bytes, source: str) -> bytes:
    """The entry's data exactly as stored in the wheel (still compressed when it was)."""
    if info.flag_bits & 0x1:
        raise EnvBuildError(f"{source}: {info.filename} is encrypted")
    header = raw[info.header_offset : info.header_offset + 30]
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise EnvBuildError(f"{source}: {info.filename} has no local header where the directory says")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_length + extra_length
    data = raw[start : start + info.compress_size]
    if len(data) != info.compress_size:
        raise EnvBuildError(f"{source}: {info.filename} is cut short")
    return data


def _check_name(path: str, source: str) -> None:
    parts = path.split("/")
    for part in parts:
        bad = any(ch in FORBIDDEN_CHARS or ch in ":\\" or ord(ch) < 0x20 for ch in part)
        if part in ("", ".", "..") or bad or part != part.rstrip(" .") or is_reserved_name(part):
            raise EnvBuildError(f"{source}: {path!r} is not a file name Windows can hold in the environment")


def _destination(name: str, data_dir: str, target: Target, distribution: str) -> str:
    """Where an installer puts a wheel's file, relative to the environment's folder."""
    if name.startswith(data_dir + "/"):
        scheme, _, rest = name[len(data_dir) + 1 :].partition("/")
        if not rest:
            raise EnvBuildError(f"{name}: a file directly in {data_dir}/")
        folders = {
            "purelib": target.site_packages,
            "platlib": target.site_packages,
            "scripts": target.scripts,
            "data": "",
            "headers": target.headers(distribution),
        }
        if scheme not in folders:
            raise EnvBuildError(f"{name}: unknown wheel scheme {scheme!r}")
        return posixpath.join(folders[scheme], rest) if folders[scheme] else rest
    return posixpath.join(target.site_packages, name)


def _wheel_entries(pin: Pin, data: bytes, target: Target) -> tuple[list[Entry], Message]:
    try:
        wheel = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise EnvBuildError(f"{pin.filename} is not a zip file: {exc}") from None
    infos = [info for info in wheel.infolist() if not info.is_dir()]
    tops = {info.filename.split("/", 1)[0] for info in infos}
    dist_infos = sorted(top for top in tops if top.endswith(".dist-info"))
    if len(dist_infos) != 1:
        raise EnvBuildError(f"{pin.filename} has {len(dist_infos)} .dist-info folders, not one")
    dist_info = dist_infos[0]
    stem = dist_info[: -len(".dist-info")]
    data_dir = stem + ".data"
    distribution = stem.rsplit("-", 1)[0]
    try:
        metadata = BytesHeaderParser().parsebytes(wheel.read(f"{dist_info}/METADATA"))
        wheel_file = BytesHeaderParser().parsebytes(wheel.read(f"{dist_info}/WHEEL"))
        record_text = wheel.read(f"{dist_info}/RECORD").decode("utf-8")
    except KeyError as exc:
        raise EnvBuildError(f"{pin.filename} lacks {exc.args[0]}") from None
    if not str(wheel_file.get("Wheel-Version", "")).startswith("1."):
        raise EnvBuildError(f"{pin.filename}: Wheel-Version {wheel_file.get('Wheel-Version')!r} is not 1.x")
    recorded = {}
    for line in record_text.splitlines():
        fields = line.rsplit(",", 2)
        if len(fields) == 3:
            recorded[fields[0].strip('"')] = (fields[1], fields[2])
    entries = []
    record_lines = []
    site = target.site_packages
    for info in infos:
        if info.filename in (f"{dist_info}/RECORD", f"{dist_info}/INSTALLER") or info.filename.endswith(
            (".dist-info/RECORD.jws", ".dist-info/RECORD.p7s")
        ):
            continue
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise EnvBuildError(f"{pin.filename}: {info.filename} uses compression method {info.compress_type}")
        path = _destination(info.filename, data_dir, target, distribution)
        _check_name(path, pin.filename)
        digest, size = recorded.get(info.filename, ("", ""))
        record_lines.append(f"{posixpath.relpath(path, site)},{digest},{size}")
        entries.append(
            Entry(
                path,
                info.compress_type,
                _raw(wheel, info, data, pin.filename),
                info.CRC,
                info.file_size,
                info.date_time,
                pin.filename,
            )
        )
    record_path = posixpath.join(site, dist_info, "RECORD")
    installer_path = posixpath.join(site, dist_info, "INSTALLER")
    installer_hash = base64.urlsafe_b64encode(hashlib.sha256(INSTALLER).digest()).rstrip(b"=").decode()
    record_lines.append(f"{dist_info}/INSTALLER,sha256={installer_hash},{len(INSTALLER)}")
    record_lines.append(f"{dist_info}/RECORD,,")
    record = ("\n".join(sorted(record_lines)) + "\n").encode("utf-8")
    for path, content in ((record_path, record), (installer_path, INSTALLER)):
        entries.append(
            Entry(path, zipfile.ZIP_STORED, content, zlib.crc32(content), len(content), FIXED_DATE, pin.filename)
        )
    return entries, metadata


def _dos(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    year = min(max(year, 1980), 2107)
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


def write_zip(entries: list[Entry]) -> bytes:
    """A plain zip (no zip64, no extra fields) of ``entries`` in the order given."""
    if len(entries) > MAX_ENTRIES:
        raise EnvBuildError(f"the environment has {len(entries)} files, more than a zip without zip64 holds")
    out = io.BytesIO()
    central = io.BytesIO()
    for entry in entries:
        name = entry.path.encode("utf-8")
        flags = 0x800 if not entry.path.isascii() else 0  # the name is UTF-8
        time, date = _dos(entry.date_time)
        offset = out.tell()
        if offset + 30 + len(name) + len(entry.data) > MAX_ARCHIVE_BYTES:
            raise EnvBuildError("the environment is larger than 4 GiB, more than a zip without zip64 holds")
        fields = (20, flags, entry.method, time, date, entry.crc, len(entry.data), entry.size, len(name))
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", *fields, 0))
        out.write(name)
        out.write(entry.data)
        central.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, offset))
        central.write(name)
    start = out.tell()
    directory = central.getvalue()
    if start + len(directory) > MAX_ARCHIVE_BYTES:
        raise EnvBuildError("the environment is larger than 4 GiB, more than a zip without zip64 holds")
    out.write(directory)
    out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), start, 0))
    return out.getvalue()


def install_archive(pins: tuple[Pin, ...], wheels: dict[str, bytes], target: Target) -> Installed:
    """Every wheel installed into one environment, as a zip archive of it."""
    entries: list[Entry] = []
    metadata: dict[str, Message] = {}
    for pin in pins:
        wheel_entries, metadata[pin.sha256] = _wheel_entries(pin, wheels[pin.sha256], target)
        entries += wheel_entries
    entries.sort(key=lambda entry: entry.path)
    seen: dict[str, str] = {}
    for entry in entries:
        # Windows file names are case-insensitive: two entries that differ in case are one file there.
        key = entry.path.lower()
        if key in seen:
            raise EnvBuildError(
                f"{entry.path} is in both {seen[key]} and {entry.source}: the two packages would overwrite "
                "each other's file"
            )
        seen[key] = entry.source
    longest = max((entry.path for entry in entries), key=len, default="")
    folder = max((entry.path.rpartition("/")[0] for entry in entries), key=len, default="")
    return Installed(write_zip(entries), len(entries), sum(entry.size for entry in entries), longest, folder, metadata)
