"""The bundle's inputs, validated once into an immutable spec.

Everything downstream (render, write) trusts a BundleSpec: the checks live
here and only here, so a value that reaches a template is already known to
be writable in every file's language.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import __version__
from .errors import InvalidValue
from .options import Option
from .winpath import WinPath, is_reserved_name, parse_windows_path

AUTH_MODES = ("token", "none")
WINDOW_MODES = ("hidden", "minimized")
SCOPES = ("machine", "user")


LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # one DNS label, lowercase (RFC 1123)
# Four decimal numbers of at most three ASCII digits, without leading zeros, joined by dots.
DOTTED_QUAD = re.compile(r"(0|[1-9][0-9]{0,2})(?:\.(0|[1-9][0-9]{0,2})){3}")
VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*(?:[a-z0-9.+-]*)")


def is_label(text: str) -> bool:
    """One DNS label, lowercase: 1-63 letters, digits and hyphens, no hyphen first or last."""
    return LABEL.fullmatch(text) is not None


def is_dotted_quad(text: str) -> bool:
    return DOTTED_QUAD.fullmatch(text) is not None


def _input(*, check: Callable[[Any, Mapping[str, Any]], Any] | None = None, **declared: Any) -> Any:
    """A field of BundleSpec that is an input: its Option and its check ride in the field's
    metadata, and its default (none for a required one) is the field's own. ``check`` is given
    the value and the inputs checked before it, and returns the value to keep or raises
    InvalidValue; an input with choices has none (BundleSpec checks the value is one of them)."""
    option = Option(**declared)
    default = dataclasses.MISSING if option.required else option.default
    return dataclasses.field(default=default, metadata={"option": option, "check": check})


@dataclass(frozen=True)
class BundleSpec:
    """One bundle, fully decided: the render is a pure function of this.

    Each input is declared here once, in the order --help lists it: its field (name, type,
    default) and, in the field's metadata, its flag, help and check (generator/options.py). The
    click options, generate()'s keyword arguments and bundle.json's keys all follow from these
    fields. The checks run when a spec is made, however it is made (the constructor,
    build_spec, ``spec.replace``): an invalid spec cannot exist, so nothing downstream checks
    again. Values are normalised on the way in (a path given as text becomes a WinPath, the
    name becomes lowercase).
    """

    ip: str = _input(
        flag="--ip",
        metavar="ADDRESS",
        required=True,
        help="Loopback address of the bundle, inside 127.0.0.0/8: the broker holds it from boot.",
        check=lambda value, _: parse_ip(value),
    )
    name: str = _input(
        flag="--name",
        metavar="NAME",
        required=True,
        help="Host name for the browser (http://NAME/): one DNS label.",
        check=lambda value, _: parse_name(value),
    )
    port: int = _input(
        flag="--port",
        metavar="PORT",
        default=80,
        help="TCP port of the bundle's address.",
        check=lambda value, _: parse_port(value),
    )
    notebook_dir: WinPath = _input(
        flag="--notebook-dir",
        metavar="PATH",
        default="%USERPROFILE%\\Notebooks",
        help="Folder the notebook server opens; created at start when missing.",
        check=lambda value, _: parse_windows_path("notebook_dir", _path_text(value)),
    )
    python: WinPath = _input(
        flag="--python",
        metavar="PATH",
        default="%ProgramFiles%\\Python313\\python.exe",
        help="python.exe on the target machines, installed for all users, with notebook installed: the broker and "
        "each user's server run it; with --env, the base Python that the bundle's environment uses.",
        check=lambda value, _: parse_python(value),
    )
    auth: str = _input(
        flag="--auth",
        choices=AUTH_MODES,
        default="token",
        help="token: each user's server takes only the broker's requests (which carry its secret, made anew at "
        "every start) and programs of that user that send the secret; http://NAME/ asks nobody for a sign-in. "
        "none: the server takes any request that reaches its port - any account of the PC can run code as that "
        "user.",
    )
    window: str = _input(
        flag="--window",
        choices=WINDOW_MODES,
        default="hidden",
        help="hidden: no console window (conhost --headless). minimized: a minimized console window.",
    )
    scope: str = _input(
        flag="--scope",
        choices=SCOPES,
        default="machine",
        help="machine: every user who logs on gets their own server. user: only the account given by --user.",
    )
    user: str | None = _input(
        flag="--user",
        metavar="DOMAIN\\NAME",
        help="The account a --scope user bundle is for.",
        check=lambda value, checked: parse_user(checked["scope"], value),
    )
    env: bool = _input(
        flag="--env",
        switch=True,
        default=False,
        help="Bring a locked Python environment with notebook (wheels for Windows x64, pinned by SHA-256), "
        "installed beside the launcher and wired to the base Python that --python names.",
        check=lambda value, _: parse_flag("env", value),
    )
    python_version: str | None = _input(
        flag="--python-version",
        metavar="3.N",
        needs_env=True,
        help="the CPython version of the target's base Python.  [default: read from --python, e.g. Python313 -> 3.13]",
        check=lambda value, checked: parse_python_version(checked["env"], value, checked["python"]),
    )
    packages: tuple[str, ...] = _input(
        flag="--package",
        metavar="NAME[==VER]",
        repeat=True,
        default=(),
        needs_env=True,
        help="a package to add to notebook (repeatable).",
        check=lambda value, checked: parse_packages(checked["env"], value),
    )
    version: str = __version__

    def __post_init__(self) -> None:
        # The fields hold what the caller gave until here. Checked in the order --help lists
        # the flags, so the first bad flag is the one named; each check sees the inputs checked
        # before it (user needs scope; the environment's inputs need env and python).
        checked: dict[str, object] = {}
        for field in dataclasses.fields(self):
            if "option" not in field.metadata:
                continue
            value = getattr(self, field.name)
            option = field.metadata["option"]
            if option.needs_env and not checked["env"] and option.given(value):
                shown = value[0] if option.repeat and isinstance(value, (tuple, list)) else value  # the first --package
                raise InvalidValue(field.name, shown, "goes with --env only")
            check = field.metadata["check"]
            checked[field.name] = (
                parse_choice(field.name, value, option.choices) if check is None else check(value, checked)
            )
        if not isinstance(self.version, str) or not VERSION.fullmatch(self.version):
            raise InvalidValue("version", self.version, "must be a version number like 1.2.3")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> BundleSpec:
        """Another spec with ``changes``: checked like any other."""
        unknown = sorted(set(changes) - {*INPUTS, "version"})
        if unknown:
            raise TypeError(f"BundleSpec has no field {unknown[0]!r}")
        return dataclasses.replace(self, **changes)

    def inputs(self) -> dict[str, object]:
        """The inputs as the user would pass them again (bundle.json); the environment's only
        with --env, so that a bundle without one is the same, byte for byte, as before they existed."""
        keys = INPUTS if self.env else tuple(key for key in INPUTS if key not in ENV_INPUTS)
        values = {key: getattr(self, key) for key in keys}
        return {
            key: str(value) if isinstance(value, WinPath) else list(value) if isinstance(value, tuple) else value
            for key, value in values.items()
        }


# Each input's Option, by name, in the order --help lists them.
DECLARED: dict[str, Option] = {
    field.name: field.metadata["option"] for field in dataclasses.fields(BundleSpec) if "option" in field.metadata
}
INPUTS = tuple(DECLARED)
# What a bundle needs: build_spec names one left out.
REQUIRED = tuple(name for name, option in DECLARED.items() if option.required)
# The inputs a bundle records only when it brings its own environment: --env itself, and those
# that need it.
ENV_INPUTS = ("env", *(name for name, option in DECLARED.items() if option.needs_env))
# What an input left out (or None) means: the one place a default is written is its field above.
DEFAULTS: dict[str, object] = {name: option.default for name, option in DECLARED.items() if not option.required}


def parse_ip(value: object) -> str:
    """A loopback host address: Windows routes all of 127.0.0.0/8 to this PC."""
    if not isinstance(value, str) or not is_dotted_quad(value):
        raise InvalidValue("ip", value, "must be an IPv4 address written as four decimal numbers, like 127.0.0.13")
    octets = [int(part) for part in value.split(".")]
    if any(octet > 255 for octet in octets):
        raise InvalidValue("ip", value, "each of the four numbers must be 0-255")
    if octets[0] != 127:
        raise InvalidValue("ip", value, "must be a loopback address inside 127.0.0.0/8")
    if octets[1:] in ([0, 0, 0], [255, 255, 255]):
        raise InvalidValue("ip", value, "is the network or broadcast address of 127.0.0.0/8, not a host address")
    return value


def parse_name(value: object) -> str:
    """One DNS label (RFC 1123), lowercase: browsers send the Host lowercase.

    ASCII is checked before lowercasing: str.lower() maps some non-ASCII
    letters to ASCII ones (the Kelvin sign U+212A becomes 'k'), which would
    turn a name the user did not type into the one the bundle uses.
    """
    if not isinstance(value, str):
        raise InvalidValue("name", value, "a host name is required")
    for ch in value:
        if not ch.isascii():
            raise InvalidValue(
                "name", value, f"U+{ord(ch):04X} is not ASCII: a name is ASCII letters, digits and hyphens"
            )
    name = value.lower()
    if not is_label(name):
        raise InvalidValue(
            "name",
            value,
            "must be one DNS label: 1-63 letters, digits and hyphens, not starting or ending with a hyphen",
        )
    if name.isdigit():
        raise InvalidValue("name", value, "must not be all digits (it would read as an address)")
    if name == "localhost":
        raise InvalidValue("name", value, "'localhost' is reserved for 127.0.0.1")
    if is_reserved_name(name):
        # The name becomes folder and file names on Windows (%ProgramFiles%\gen-bundle\NAME, NAME.task.xml).
        raise InvalidValue("name", value, "is a reserved device name on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9)")
    return name


def parse_port(value: object) -> int:
    """A port as a number, or as the decimal digits the command line gives."""
    number = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5 else value
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
        raise InvalidValue("port", value, "must be a TCP port number from 1 to 65535")
    return number


_USER = r"([A-Za-z0-9][A-Za-z0-9.-]{0,62})\\([^\\/\"\[\]:;|=,+*?<>@%$`(){}]{1,104})"


def parse_user(scope: str, value: object) -> str | None:
    """The one account a --scope user bundle is for, as DOMAIN\\name.

    Task Scheduler resolves the name when install.ps1 registers the task, so
    a typo fails there; here the form is checked, and characters that Windows
    account names cannot hold are refused.
    """
    if scope == "machine":
        if value is not None:
            raise InvalidValue("user", value, "goes with --scope user only")
        return None
    if value is None:
        raise InvalidValue("user", value, "--scope user needs --user DOMAIN\\name")
    match = re.fullmatch(_USER, value) if isinstance(value, str) else None
    if (
        not isinstance(value, str)
        or not match
        or match.group(2) != match.group(2).strip(" .")
        or not value.isprintable()
    ):
        raise InvalidValue(
            "user",
            value,
            "must be DOMAIN\\name (for a local account, the computer's name as DOMAIN); a name cannot hold "
            '\\ / " [ ] : ; | = , + * ? < > @ % $ ` ( ) { } or end in a space or dot',
        )
    return value


def parse_choice(param: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidValue(param, value, "must be one of " + ", ".join(choices))
    return value


def parse_python(value: object) -> WinPath:
    path = parse_windows_path("python", _path_text(value))
    if not path.rest.lower().endswith(".exe"):
        raise InvalidValue("python", str(path), "must name the python.exe file, ending in .exe")
    if path.per_user:
        raise InvalidValue(
            "python",
            str(path),
            "needs a Python installed for all users (e.g. %ProgramFiles%\\Python313\\python.exe, with the notebook "
            "package): the broker runs it at boot as LOCAL SERVICE, before anyone logs on, and with --env the "
            "environment under %ProgramFiles% is wired to it",
        )
    return path


def parse_flag(param: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(param, value, "must be true or false")
    return value


# The CPython minor versions an environment can be for (3.10 to 3.19), written once: in --python's
# folder name as the python.org installer makes it (Python313), and as --python-version takes it.
_MINORS = (10, 19)
_MINOR = "(" + "|".join(str(minor) for minor in range(_MINORS[0], _MINORS[1] + 1)) + ")"
_PYTHON_FOLDER = rf"(?i)python3{_MINOR}(?:-64)?"  # compiled on first use (re caches it)
CPYTHON_MINOR = rf"3\.{_MINOR}"


def parse_python_version(env: bool, value: object, python: WinPath) -> str | None:
    """The CPython minor version of the target's base Python: the environment's wheels are for it.

    By default it is read from --python's folder, as the python.org installer names it
    (Python313); a value given that contradicts that folder is refused.
    """
    if not env:
        return None  # BundleSpec refused a value given without --env
    folder = python.rest.replace("/", "\\").split("\\")[-2] if "\\" in python.rest else ""
    named = re.fullmatch(_PYTHON_FOLDER, folder)
    from_folder = f"3.{named.group(1)}" if named else None
    if value is None:
        if from_folder is None:
            raise InvalidValue(
                "python_version",
                value,
                f"--env needs the target's CPython version (like 3.13): --python '{python}' does not name it",
            )
        return from_folder
    if not isinstance(value, str) or not re.fullmatch(CPYTHON_MINOR, value):
        raise InvalidValue(
            "python_version", value, f"must be a CPython version 3.{_MINORS[0]} to 3.{_MINORS[1]}, written like 3.13"
        )
    if from_folder is not None and from_folder != value:
        raise InvalidValue(
            "python_version", value, f"contradicts --python '{python}', which is the folder of Python {from_folder}"
        )
    return value


def parse_packages(env: bool, value: object) -> tuple[str, ...]:
    """The environment's packages: notebook first (always), then the others in the order given."""
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise InvalidValue("packages", value, "must be a list of package requirements")
    if not env:
        return ()  # BundleSpec refused packages given without --env
    from .packages import NOTEBOOK_PACKAGE, parse_package, requirement_name  # here: only --env needs it

    packages: dict[str, str] = {}
    for item in value:
        requirement = parse_package(item)
        key = requirement_name(requirement)
        if key in packages:
            raise InvalidValue("packages", item, "names a package that is already listed")
        packages[key] = requirement
    if NOTEBOOK_PACKAGE not in packages:
        packages = {NOTEBOOK_PACKAGE: NOTEBOOK_PACKAGE, **packages}
    else:
        packages = {NOTEBOOK_PACKAGE: packages.pop(NOTEBOOK_PACKAGE), **packages}
    return tuple(packages.values())


def _path_text(value: object) -> object:
    """A WinPath is checked again from its text: one made by hand gets no pass."""
    return str(value) if isinstance(value, WinPath) else value


def build_spec(**inputs: object) -> BundleSpec:
    """The spec for the given inputs (keyword arguments named as BundleSpec's input fields),
    the defaults filled in for those left out or given as None."""
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown:
        raise TypeError(f"build_spec() got unexpected inputs: {', '.join(unknown)}")
    # A required input left out is passed as None: its check refuses it, naming it.
    given: dict[str, Any] = {
        name: inputs.get(name) for name in INPUTS if name in REQUIRED or inputs.get(name) is not None
    }
    return BundleSpec(**given)
