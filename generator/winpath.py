"""Windows paths as the bundle's users write them, checked on a Linux build host.

A path is either absolute (``C:\\dir`` or ``\\\\server\\share\\dir``) or starts
with one well-known environment variable (``%USERPROFILE%\\Notebooks``) that
is expanded on the target machine, for the user the server runs as. Every
other ``%`` is a literal character, and each file's escaping keeps it one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidValue

# Variables a path may start with, by their lowercase spelling. Only these are
# expanded, so that a literal '%' elsewhere can never turn into an expansion.
ENV_BASES = {name.lower(): name for name in ("USERPROFILE", "LOCALAPPDATA", "APPDATA", "ProgramFiles", "SystemDrive")}
PER_USER_BASES = frozenset({"USERPROFILE", "LOCALAPPDATA", "APPDATA"})
# Where each variable points on a usual PC (C:, an English Windows): what path lengths are measured
# against. The per-user ones are below the profile, %USERPROFILE%, as the profile's own folders.
TYPICAL_VALUES = {"ProgramFiles": "C:\\Program Files", "ProgramData": "C:\\ProgramData", "SystemDrive": "C:"}
IN_PROFILE = {"USERPROFILE": "", "LOCALAPPDATA": "AppData\\Local", "APPDATA": "AppData\\Roaming"}

MAX_PATH_CHARS = 259  # MAX_PATH less the terminating NUL: no long-path opt-in needed
# CreateDirectory's limit for a folder's path ("a default string size limit for paths of 248
# characters", room for an 8.3 file name below it), less the terminating NUL.
MAX_FOLDER_CHARS = 247
FORBIDDEN_CHARS = frozenset('"<>|?*')
# Device names Windows reserves in every folder, with any extension ("Naming Files, Paths, and
# Namespaces"): COM0 to COM9 and LPT0 to LPT9, and the superscript digits 1, 2 and 3.
PORT_DIGITS = "0123456789\u00b9\u00b2\u00b3"
RESERVED_NAMES = frozenset(["con", "prn", "aux", "nul"] + [f"{p}{d}" for p in ("com", "lpt") for d in PORT_DIGITS])


def is_reserved_name(part: str) -> bool:
    """A file or folder name Windows opens as a device: the name before its first dot, less
    trailing spaces, is a reserved one (so 'nul.txt' and 'com1 .log' are too)."""
    return part.split(".")[0].rstrip(" ").lower() in RESERVED_NAMES


ENV_PREFIX = re.compile(r"%([A-Za-z]+)%(?:\\|$)")  # %NAME% of ASCII letters, then a backslash or the end
DRIVE = re.compile(r"[A-Za-z]:\\")


@dataclass(frozen=True)
class WinPath:
    """A validated Windows path: ``base`` is an environment variable or None."""

    base: str | None
    rest: str

    def __str__(self) -> str:
        if self.base is None:
            return self.rest
        return f"%{self.base}%" + (f"\\{self.rest}" if self.rest else "")

    @property
    def per_user(self) -> bool:
        """True when the path differs for every user who runs the server."""
        return self.base in PER_USER_BASES

    def typical(self) -> str:
        """The path on a usual PC (TYPICAL_VALUES), for a machine-wide base."""
        if self.base is None:
            return self.rest
        if self.base not in TYPICAL_VALUES:
            raise ValueError(f"{self} differs for each user: it has no one value on a PC")
        return TYPICAL_VALUES[self.base] + (f"\\{self.rest}" if self.rest else "")

    def in_profile(self) -> str:
        """A per-user path relative to the user's profile folder (%LOCALAPPDATA%\\x: AppData\\Local\\x),
        as a machine-wide script finds it below each profile's LocalPath."""
        if self.base not in IN_PROFILE:
            raise ValueError(f"{self} is not below a user's profile")
        return "\\".join(part for part in (IN_PROFILE[self.base], self.rest) if part)

    def join(self, *parts: str) -> WinPath:
        """A path below this one; parts are trusted constants of the bundle."""
        tail = "\\".join(parts)
        if not self.rest:
            return WinPath(self.base, tail)
        return WinPath(self.base, self.rest.rstrip("\\") + "\\" + tail)


REFUSED_CATEGORIES = ("Cc", "Cs", "Zl", "Zp", "Cn")  # controls, surrogates, line and paragraph separators, unassigned


def is_refused_char(ch: str) -> bool:
    """A character no path may hold: one of REFUSED_CATEGORIES, or the BOM. Of ASCII only the
    controls are, so an ASCII path, as every default is, needs no character table loaded."""
    if ch < "\x80":
        return ch < " " or ch == "\x7f"
    import unicodedata

    return unicodedata.category(ch) in REFUSED_CATEGORIES or ch == "\ufeff"


def _check_chars(param: str, value: str, text: str) -> None:
    for ch in text:
        if ch in FORBIDDEN_CHARS:
            raise InvalidValue(param, value, f'Windows does not allow {ch!r} in a path (forbidden: " < > | ? *)')
        if is_refused_char(ch):
            raise InvalidValue(
                param,
                value,
                f"control, separator or unassigned character U+{ord(ch):04X} is not allowed in a path",
            )
        if ch == "/":
            raise InvalidValue(param, value, "write Windows paths with backslashes, not '/'")
        if ch == ":":
            raise InvalidValue(param, value, "':' is allowed only after the drive letter (C:\\...)")


def _check_components(param: str, value: str, components: list[str]) -> None:
    for part in components:
        if part == "":
            raise InvalidValue(param, value, "empty path component (doubled backslash)")
        if part in (".", ".."):
            raise InvalidValue(param, value, f"'{part}' components are not allowed; write the full path")
        if part[-1] in " .":
            raise InvalidValue(param, value, f"component {part!r} ends in a space or dot, which Windows strips")
        if is_reserved_name(part):
            raise InvalidValue(param, value, f"component {part!r} is a reserved device name on Windows")


def env_prefix(value: str) -> tuple[str, int] | None:
    """``%NAME%`` of ASCII letters at the start of ``value``, then a backslash or the end (or a
    last newline, which the character check then refuses): NAME, and where the rest begins."""
    match = ENV_PREFIX.match(value)
    return None if match is None else (match.group(1), match.end())


def parse_windows_path(param: str, value: object) -> WinPath:
    """Check ``value`` against Windows' rules and split off an environment base.

    A trailing backslash is dropped (``C:\\nb\\`` is ``C:\\nb``), except on a
    drive root. Anything Windows would reject, or silently change, is refused
    here so that no file in the bundle has to cope with it.
    """
    if not isinstance(value, str) or not value:
        raise InvalidValue(param, value, "a Windows path is required")
    if len(value) > MAX_PATH_CHARS:
        raise InvalidValue(param, value, f"longer than {MAX_PATH_CHARS} characters (Windows MAX_PATH)")
    env = env_prefix(value)
    if env is not None:
        name, end = env
        base = ENV_BASES.get(name.lower())
        if base is None:
            allowed = ", ".join(f"%{b}%" for b in ENV_BASES.values())
            raise InvalidValue(param, value, f"a path may start only with one of {allowed}")
        rest = value[end:].rstrip("\\")
        _check_chars(param, value, rest)
        if rest:
            _check_components(param, value, rest.split("\\"))
        return WinPath(base, rest)
    if value.startswith("\\\\"):
        body = value[2:].rstrip("\\")
        parts = body.split("\\")
        if len(parts) < 2 or parts[0] in ("?", ".") or not parts[0] or not parts[1]:
            raise InvalidValue(param, value, "a UNC path needs a server and a share: \\\\server\\share\\...")
        _check_chars(param, value, body)
        _check_components(param, value, parts)
        return WinPath(None, "\\\\" + body)
    if not DRIVE.match(value):
        raise InvalidValue(
            param,
            value,
            "must be an absolute Windows path (C:\\..., \\\\server\\share\\...) "
            "or start with %USERPROFILE%\\ or another allowed variable",
        )
    _check_chars(param, value, value[2:])
    stripped = value[:3] + value[3:].rstrip("\\")
    if len(stripped) > 3:
        _check_components(param, value, stripped[3:].split("\\"))
    return WinPath(None, stripped)
