"""The bundle's inputs, validated once into an immutable spec.

Everything downstream (render, write) trusts a BundleSpec: the checks live
here and only here, so a value that reaches a template is already known to
be writable in every file's language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import __version__
from .errors import InvalidValue
from .winpath import WinPath, parse_windows_path

AUTH_MODES = ("token", "none")
WINDOW_MODES = ("hidden", "minimized")
SCOPES = ("machine", "user")

# The inputs, in the order --help lists them, and the default of each: the one place a
# default is written. The CLI shows these; the library fills them in for None.
INPUTS = (
    "ip", "name", "port", "notebook_dir", "python", "auth", "window", "scope", "user",
    "env", "python_version", "packages",
)
# The inputs of a bundle that brings its own environment (--env); a bundle without one
# records none of them, so that it is the same, byte for byte, as before they existed.
ENV_INPUTS = ("env", "python_version", "packages")
DEFAULTS: dict[str, object] = {
    "port": 80,
    "notebook_dir": "%USERPROFILE%\\Notebooks",
    "python": "%ProgramFiles%\\Python313\\python.exe",
    "auth": "token",
    "window": "hidden",
    "scope": "machine",
}
# The defaults of the environment's inputs: no environment, no packages beyond notebook.
# (--python-version has none: it is read from --python.)
ENV_DEFAULTS: dict[str, object] = {"env": False, "packages": ()}
# The package every environment has: the launcher runs its "python -m notebook".
NOTEBOOK_PACKAGE = "notebook"

# Exit code the server uses when the process that started it is gone (the task
# was stopped): the launcher then ends instead of starting a new server.
LAUNCHER_GONE_EXIT = 86
# Restart back-off of the launcher, in seconds: first wait, and the cap.
BACKOFF_FIRST = 5
BACKOFF_CAP = 300
# How often a second launcher of the same user checks whether the first has ended.
LOCK_RETRY = 60
# A server that ran this long resets the back-off to BACKOFF_FIRST.
STABLE_AFTER = 60
# How long install.ps1 waits for a server it started to answer: a first start
# (no bytecode cache under Program Files, antivirus scanning every file) is slow.
PROBE_SECONDS = 90
# Exit codes of install.ps1 and uninstall.ps1, for Group Policy, SCCM and Intune reporting.
EXIT_TAMPERED = 2  # a file differs from SHA256SUMS: the bundle changed after review
EXIT_NOT_ADMIN = 3  # not run elevated
EXIT_PREFLIGHT = 4  # a check before any change failed; nothing was changed
EXIT_NO_ANSWER = 5  # installed, but the server did not answer for the user who is logged on
EXIT_FAILURE = 1603  # anything else (the Windows Installer code for a fatal error)
# How long install.ps1 or uninstall.ps1 waits for another run of the same bundle to end: well
# within the 600 s that Group Policy gives a startup script by default.
LOCK_WAIT_SECONDS = 300
# How many of the last lines of a user's launcher.log install.ps1 prints when it exits EXIT_NO_ANSWER.
LOG_TAIL_LINES = 15
# Launcher log size at which it is rotated (one old copy is kept).
LOG_ROTATE_BYTES = 1024 * 1024
# The server's output within one run: past this size server.log moves to server.1.log.
SERVER_LOG_BYTES = 1024 * 1024

# How many logs of each script's runs the state folder's logs keep.
KEEP_LOGS = 30
# How many of a bundle's hosts backups (hosts.gen-bundle-<name>-<time>.bak) stay beside hosts.
KEEP_HOSTS_BACKUPS = 3
# jupyter_core before this loads settings and kernels from %ProgramData%\\jupyter (CVE-2025-30167).
JUPYTER_CORE_MINIMUM = "5.8.1"

INSTALL_ROOT = WinPath("ProgramFiles", "gen-bundle")
# The install's own state (receipt, logs of each run): under %ProgramFiles%, where users cannot
# create anything, not under %ProgramData%, where any user can create the folder first.
STATE_ROOT = INSTALL_ROOT.join("state")
START_MENU = WinPath("ProgramData", "Microsoft\\Windows\\Start Menu\\Programs")
# Jupyter's machine-wide folder: every user's server reads settings and kernels from it.
JUPYTER_SHARED = WinPath("ProgramData", "jupyter")
TASK_FOLDER = "\\gen-bundle\\"

# Patterns are compiled on first use (re caches them): only those a run needs cost start-up time.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOTTED_QUAD = r"(0|[1-9][0-9]{0,2})(?:\.(0|[1-9][0-9]{0,2})){3}"
_VERSION = r"[0-9]+(?:\.[0-9]+)*(?:[a-z0-9.+-]*)"


@dataclass(frozen=True)
class BundleSpec:
    """One bundle, fully decided: the render is a pure function of this.

    The checks run when a spec is made, however it is made (the constructor,
    build_spec, ``dataclasses.replace``): an invalid spec cannot exist, so
    nothing downstream checks again. Values are normalised on the way in (a
    path given as text becomes a WinPath, the name becomes lowercase).
    """

    ip: str
    name: str
    port: int
    notebook_dir: WinPath
    python: WinPath
    auth: str
    window: str
    scope: str
    user: str | None
    env: bool
    python_version: str | None
    packages: tuple[str, ...]
    version: str = __version__

    def __post_init__(self) -> None:
        # In the order --help lists the flags, so the first bad flag is the one named;
        # scope is decided before user, which depends on it.
        checked = {
            "ip": parse_ip(self.ip),
            "name": parse_name(self.name),
            "port": parse_port(self.port),
            "notebook_dir": parse_windows_path("notebook_dir", _path_text(self.notebook_dir)),
            "python": parse_python(self.python),
            "auth": parse_choice("auth", self.auth, AUTH_MODES),
            "window": parse_choice("window", self.window, WINDOW_MODES),
            "scope": parse_choice("scope", self.scope, SCOPES),
        }
        checked["user"] = parse_user(checked["scope"], self.user)
        checked["env"] = parse_flag("env", self.env)
        checked["python_version"] = parse_python_version(checked["env"], self.python_version, checked["python"])
        checked["packages"] = parse_packages(checked["env"], self.packages)
        if not isinstance(self.version, str) or not re.fullmatch(_VERSION, self.version):
            raise InvalidValue("version", self.version, "must be a version number like 1.2.3")
        for field, value in checked.items():
            object.__setattr__(self, field, value)

    @property
    def url(self) -> str:
        """The friendly address the person types; no ':80' for the default port."""
        port = "" if self.port == 80 else f":{self.port}"
        return f"http://{self.name}{port}/"

    @property
    def launcher_file(self) -> str:
        return f"start-{self.name}.bat"

    @property
    def config_file(self) -> str:
        return f"start-{self.name}.config.py"

    @property
    def guard_file(self) -> str:
        return f"start-{self.name}.guard.py"

    @property
    def installed_files(self) -> tuple[str, ...]:
        """The files install.ps1 copies to the install folder."""
        return (self.launcher_file, self.config_file, self.guard_file)

    @property
    def shortcut_title(self) -> str:
        """The Start-menu entry, one for all users, that opens the server signed in."""
        return f"{self.name} notebook"

    @property
    def shortcut_name(self) -> str:
        return f"{self.shortcut_title}.lnk"

    @property
    def shortcut_arguments(self) -> str:
        """What the Start-menu entry passes to cmd.exe, in the install folder: the launcher's
        "open", which hands the browser the secret only if the server is the user's own."""
        return f"/d /c .\\{self.launcher_file} open"

    @property
    def shortcut_path(self) -> WinPath:
        return START_MENU.join(self.shortcut_name)

    @property
    def shortcut_mark(self) -> str:
        """How the entry's description begins: what tells gen-bundle's entry from another."""
        return f"gen-bundle {self.name}:"

    @property
    def legacy_shortcut_name(self) -> str:
        """gen-bundle 0.1.0's per-user entry, which held the secret; each user's server removes it."""
        return f"{self.shortcut_title}.url"

    @property
    def task_file(self) -> str:
        return f"{self.name}.task.xml"

    @property
    def task_name(self) -> str:
        return self.name

    @property
    def task_folder(self) -> str:
        return TASK_FOLDER

    @property
    def install_root(self) -> WinPath:
        return INSTALL_ROOT

    @property
    def install_dir(self) -> WinPath:
        """Where install.ps1 puts the launcher: only administrators can write there."""
        return INSTALL_ROOT.join(self.name)

    @property
    def launcher_path(self) -> WinPath:
        return self.install_dir.join(self.launcher_file)

    @property
    def config_path(self) -> WinPath:
        return self.install_dir.join(self.config_file)

    @property
    def guard_path(self) -> WinPath:
        return self.install_dir.join(self.guard_file)

    @property
    def task_command(self) -> str:
        """What the task starts. Task Scheduler expands the %variables%.

        hidden: conhost.exe --headless gives cmd.exe a console that is never
        shown, and the task stays Running for as long as the launcher runs.
        minimized: cmd.exe, whose ``start /min`` opens the launcher in a
        minimized window; the task itself ends at once. It avoids conhost's
        undocumented --headless, which some security tools flag.
        """
        if self.window == "hidden":
            return "%SystemRoot%\\System32\\conhost.exe"
        return "%SystemRoot%\\System32\\cmd.exe"

    @property
    def task_arguments(self) -> str:
        """The arguments hold no quote and no field with a space.

        conhost splits its own command line with CommandLineToArgvW and joins
        what follows its switches into the client's command line: older
        versions join the fields as they are (quotes are lost), newer ones put
        quotes around a field with a space. No quoting survives both, so the
        launcher is named relative to the task's working directory (the
        install folder). ``.\\`` makes it a path: cmd.exe may read a command
        word that begins with a built-in's name (``start-py.bat``) as that
        built-in. ``start`` gets no title: a title must be quoted.
        """
        launcher = f"%SystemRoot%\\System32\\cmd.exe /d /c .\\{self.launcher_file}"
        if self.window == "hidden":
            return f"--headless {launcher}"
        return f"/d /c start /min {launcher}"

    @property
    def task_working_directory(self) -> WinPath:
        """The install folder: the launcher's relative name is looked up there."""
        return self.install_dir

    @property
    def watch_depth(self) -> int:
        """How many processes above the server its watchdog watches: the launcher's
        cmd.exe, (hidden) conhost.exe, the task's own process, and (--env) the venv
        launcher, Scripts\\python.exe, which runs the base python.exe as its child."""
        return (2 if self.window == "hidden" else 1) + (1 if self.env else 0)

    @property
    def state_dir(self) -> WinPath:
        """Machine-wide state of the install (receipt, logs of each run): administrators only."""
        return STATE_ROOT.join(self.name)

    @property
    def state_root(self) -> WinPath:
        return STATE_ROOT

    @property
    def receipt_path(self) -> WinPath:
        return self.state_dir.join("receipt.json")

    @property
    def state_log_dir(self) -> WinPath:
        """install.ps1's and uninstall.ps1's log of each run."""
        return self.state_dir.join("logs")

    @property
    def log_dir(self) -> WinPath:
        """Per-user, so each user's server writes only into that user's profile."""
        return WinPath("LOCALAPPDATA", f"gen-bundle\\{self.name}")

    @property
    def hosts_begin(self) -> str:
        return f"# BEGIN gen-bundle {self.name}"

    @property
    def hosts_end(self) -> str:
        return f"# END gen-bundle {self.name}"

    @property
    def hosts_lines(self) -> tuple[str, str, str]:
        """The marked block install.ps1 puts in the hosts file (hosts.txt), line by line."""
        return (self.hosts_begin, f"{self.ip} {self.name}", self.hosts_end)

    def inputs(self) -> dict[str, object]:
        """The inputs as the user would pass them again (bundle.json); the environment's only with --env."""
        keys = INPUTS if self.env else tuple(key for key in INPUTS if key not in ENV_INPUTS)
        values = {key: getattr(self, key) for key in keys}
        return {
            key: str(value) if isinstance(value, WinPath) else list(value) if isinstance(value, tuple) else value
            for key, value in values.items()
        }


def parse_ip(value: str) -> str:
    """A loopback host address: Windows routes all of 127.0.0.0/8 to this PC."""
    if not isinstance(value, str) or not re.fullmatch(_DOTTED_QUAD, value):
        raise InvalidValue("ip", value, "must be an IPv4 address written as four decimal numbers, like 127.0.0.13")
    octets = [int(part) for part in value.split(".")]
    if any(octet > 255 for octet in octets):
        raise InvalidValue("ip", value, "each of the four numbers must be 0-255")
    if octets[0] != 127:
        raise InvalidValue("ip", value, "must be a loopback address inside 127.0.0.0/8")
    if octets[1:] in ([0, 0, 0], [255, 255, 255]):
        raise InvalidValue("ip", value, "is the network or broadcast address of 127.0.0.0/8, not a host address")
    return value


def parse_name(value: str) -> str:
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
    if not re.fullmatch(_LABEL, name):
        raise InvalidValue(
            "name", value,
            "must be one DNS label: 1-63 letters, digits and hyphens, not starting or ending with a hyphen",
        )
    if name.isdigit():
        raise InvalidValue("name", value, "must not be all digits (it would read as an address)")
    if name == "localhost":
        raise InvalidValue("name", value, "'localhost' is reserved for 127.0.0.1")
    return name


def parse_port(value: int | str) -> int:
    """A port as a number, or as the decimal digits the command line gives."""
    number = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5 else value
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
        raise InvalidValue("port", value, "must be a TCP port number from 1 to 65535")
    return number


_USER = r"([A-Za-z0-9][A-Za-z0-9.-]{0,62})\\([^\\/\"\[\]:;|=,+*?<>@%$`(){}]{1,104})"


def parse_user(scope: str, value: str | None) -> str | None:
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
    if not match or match.group(2) != match.group(2).strip(" .") or not value.isprintable():
        raise InvalidValue(
            "user", value,
            "must be DOMAIN\\name (for a local account, the computer's name as DOMAIN); a name cannot hold "
            '\\ / " [ ] : ; | = , + * ? < > @ % $ ` ( ) { } or end in a space or dot',
        )
    return value


def parse_choice(param: str, value: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidValue(param, value, "must be one of " + ", ".join(choices))
    return value


def parse_python(value: str | WinPath) -> WinPath:
    path = parse_windows_path("python", _path_text(value))
    if not path.rest.lower().endswith(".exe"):
        raise InvalidValue("python", str(path), "must name the python.exe file, ending in .exe")
    return path


def parse_flag(param: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(param, value, "must be true or false")
    return value


_PYTHON_FOLDER = r"(?i)python3(1[0-9])(?:-64)?"  # compiled on first use (re caches it)
CPYTHON_MINOR = r"3\.(1[0-9])"


def parse_python_version(env: bool, value: object, python: WinPath) -> str | None:
    """The CPython minor version of the target's base Python: the environment's wheels are for it.

    By default it is read from --python's folder, as the python.org installer names it
    (Python313); a value given that contradicts that folder is refused.
    """
    if not env:
        if value is not None:
            raise InvalidValue("python_version", value, "goes with --env only")
        return None
    folder = python.rest.replace("/", "\\").split("\\")[-2] if "\\" in python.rest else ""
    named = re.fullmatch(_PYTHON_FOLDER, folder)
    from_folder = f"3.{named.group(1)}" if named else None
    if python.per_user:
        raise InvalidValue(
            "python", str(python),
            "--env needs a Python installed for all users: the environment under %ProgramFiles% is wired to "
            "one base install, which users must not be able to change (e.g. %ProgramFiles%\\Python313\\python.exe)",
        )
    if value is None:
        if from_folder is None:
            raise InvalidValue(
                "python_version", value,
                f"--env needs the target's CPython version (like 3.13): --python '{python}' does not name it",
            )
        return from_folder
    if not isinstance(value, str) or not re.fullmatch(CPYTHON_MINOR, value):
        raise InvalidValue("python_version", value, "must be a CPython version 3.10 to 3.19, written like 3.13")
    if from_folder is not None and from_folder != value:
        raise InvalidValue(
            "python_version", value, f"contradicts --python '{python}', which is the folder of Python {from_folder}"
        )
    return value


_REQUIREMENT = (  # compiled on first use (re caches it)
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
    r"(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?"
    r"(?:(?:===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+(?:,(?:===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+)*)?"
)


def normalize_package(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_package(value: object, *, param: str = "packages") -> str:
    """NAME, NAME[extra] or NAME with version comparisons, spaces removed; nothing that
    could make the resolver fetch or run something else (URLs, paths, options, markers)."""
    text = "".join(value.split()) if isinstance(value, str) else value
    if not isinstance(text, str) or not text.isascii() or not re.fullmatch(_REQUIREMENT, text):
        raise InvalidValue(
            param, value,
            "must be a package NAME, NAME==VERSION or NAME with version comparisons such as NAME>=1.2,<2 "
            "(no URLs, paths, options or markers)",
        )
    return text


def requirement_name(requirement: str) -> str:
    """The normalised package name of a requirement parse_package accepted."""
    return normalize_package(re.fullmatch(_REQUIREMENT, requirement).group("name"))


def parse_packages(env: bool, value: object) -> tuple[str, ...]:
    """The environment's packages: notebook first (always), then the others in the order given."""
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise InvalidValue("packages", value, "must be a list of package requirements")
    if not env:
        if value:
            raise InvalidValue("packages", value[0], "goes with --env only")
        return ()
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
    """The spec for the given inputs (keyword arguments named as in DEFAULTS),
    the defaults filled in for those left out or given as None."""
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown:
        raise TypeError(f"build_spec() got unexpected inputs: {', '.join(unknown)}")
    defaults = {**DEFAULTS, **ENV_DEFAULTS}
    values = {key: defaults.get(key) if inputs.get(key) is None else inputs[key] for key in INPUTS}
    if isinstance(values["packages"], list):
        values["packages"] = tuple(values["packages"])
    return BundleSpec(**values)  # type: ignore[arg-type]
