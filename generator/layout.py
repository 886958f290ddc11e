"""The bundle's layout on Windows: where everything goes, and what each thing is called.

The spec (generator/spec.py) holds the validated inputs; this module derives every name and
path of one bundle from them. Templates read ``spec`` for what the user chose, ``layout`` for
what follows from it, and ``const`` (generator/constants.py) for what every bundle shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .constants import INSTALL_ROOT, START_MENU, STATE_ROOT, TASK_FOLDER, USER_FILES
from .winpath import WinPath

if TYPE_CHECKING:
    from .spec import BundleSpec


def task_sid(task_path: str) -> str:
    """The SID Task Scheduler gives a task that runs with ProcessTokenSidType Unrestricted
    ("NT TASK\\<name>"): what the broker's log folder and each server's registration file grant.

    Microsoft Learn ("Task Security Hardening") names the task by its path with each "\\" turned
    into "-" (\\Microsoft\\Windows\\RAC\\RACTask: Microsoft-Windows-RAC-RACTask); the derivation
    itself is not documented. It is a service SID's (S-1-5-80: SHA-1 of the upper-cased name in
    UTF-16LE, five little-endian DWORDs) with 87 for 80: that gives the SIDs of two published
    ``schtasks /showsid`` outputs (tests/test_broker_task.py). str.upper() is Windows' upper-casing
    for ASCII, and task paths gen-bundle makes are ASCII."""
    import hashlib
    import struct

    name = task_path.lstrip("\\").replace("\\", "-")
    digest = hashlib.sha1(name.upper().encode("utf-16-le")).digest()
    return "S-1-5-87-" + "-".join(str(part) for part in struct.unpack("<5I", digest))


def url_of(name: str, port: int) -> str:
    """The friendly address the person types; no ':80' for the default port."""
    return f"http://{name}/" if port == 80 else f"http://{name}:{port}/"


class UserFiles:
    """The files of one user's state folder as paths: ``layout.user_files.launcher_log``."""

    def __init__(self, folder: WinPath) -> None:
        self._folder = folder

    def __getattr__(self, key: str) -> WinPath:
        if key not in USER_FILES:
            raise AttributeError(key)
        return self._folder.join(USER_FILES[key])


class Layout:
    """Every name and path of one bundle, derived from its spec: nothing here is validated
    again, and nothing here is an input."""

    def __init__(self, spec: BundleSpec) -> None:
        self.spec = spec

    @property
    def url(self) -> str:
        return url_of(self.spec.name, self.spec.port)

    @property
    def launcher_file(self) -> str:
        return f"start-{self.spec.name}.bat"

    @property
    def launcher_script_file(self) -> str:
        """What the .bat runs with python.exe -I: the loop that keeps the server running."""
        return f"start-{self.spec.name}.launcher.py"

    @property
    def config_file(self) -> str:
        return f"start-{self.spec.name}.config.py"

    @property
    def guard_file(self) -> str:
        return f"start-{self.spec.name}.guard.py"

    @property
    def installed_files(self) -> tuple[str, ...]:
        """The files install.ps1 copies to the install folder."""
        return (self.launcher_script_file, self.launcher_file, self.config_file, self.guard_file, self.broker_file)

    @property
    def shortcut_title(self) -> str:
        """The Start-menu entry, one for all users, that opens the bundle's address."""
        return f"{self.spec.name} notebook"

    @property
    def shortcut_name(self) -> str:
        return f"{self.shortcut_title}.lnk"

    @property
    def shortcut_arguments(self) -> str:
        """What the Start-menu entry passes to cmd.exe, in the install folder: the launcher's
        "open", which opens the address only when the broker is what answers there."""
        return f"/d /c .\\{self.launcher_file} open"

    @property
    def shortcut_path(self) -> WinPath:
        return START_MENU.join(self.shortcut_name)

    @property
    def shortcut_mark(self) -> str:
        """How the entry's description begins: what tells gen-bundle's entry from another."""
        return f"gen-bundle {self.spec.name}:"

    @property
    def legacy_shortcut_name(self) -> str:
        """gen-bundle 0.1.0's per-user entry, which held the secret; each user's server removes it."""
        return f"{self.shortcut_title}.url"

    @property
    def task_file(self) -> str:
        return f"{self.spec.name}.task.xml"

    @property
    def task_name(self) -> str:
        return self.spec.name

    @property
    def broker_file(self) -> str:
        """The broker (docs/broker.md): it holds the bundle's address from boot."""
        return f"{self.spec.name}.broker.py"

    @property
    def broker_path(self) -> WinPath:
        return self.install_dir.join(self.broker_file)

    @property
    def broker_task_file(self) -> str:
        return f"{self.spec.name}.broker.task.xml"

    @property
    def broker_task_name(self) -> str:
        return f"{self.spec.name}-broker"

    @property
    def broker_task_sid(self) -> str:
        """The broker's own SID: its log folder and each server's registration file grant it."""
        return task_sid(TASK_FOLDER + self.broker_task_name)

    @property
    def broker_channel(self) -> str:
        """The broker's named pipe, \\.\\pipe\\<this>: every server registers through it."""
        return f"gen-bundle-{self.spec.name}"

    @property
    def broker_log_dir(self) -> WinPath:
        """Administrators read it; the broker's task SID writes it; users have no access."""
        return self.state_dir.join("broker")

    @property
    def broker_log(self) -> WinPath:
        return self.broker_log_dir.join("broker.log")

    @property
    def broker_arguments(self) -> str:
        """What the broker's task passes to python.exe: Task Scheduler expands the %variables% and
        starts the line itself (no conhost), so a path with spaces is quoted once, as Python's
        command-line parser reads it. No value here can hold a quote (the spec's rules)."""
        return (
            f'-I "{self.broker_path}" serve --ip {self.spec.ip} --port {self.spec.port} --name {self.spec.name}'
            f' --channel {self.broker_channel} --log "{self.broker_log}"'
        )

    @property
    def install_dir(self) -> WinPath:
        """Where install.ps1 puts the launcher: only administrators can write there."""
        return INSTALL_ROOT.join(self.spec.name)

    def server_python(self, env_folder: str | None) -> WinPath:
        """The python.exe the launcher runs: the one --python names, or the environment's, in its
        folder of the install folder (``env_folder``), when the bundle brings one."""
        if env_folder is None:
            return self.spec.python
        return self.install_dir.join(env_folder, "Scripts", "python.exe")

    @property
    def launcher_path(self) -> WinPath:
        return self.install_dir.join(self.launcher_file)

    @property
    def launcher_script_path(self) -> WinPath:
        return self.install_dir.join(self.launcher_script_file)

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
        if self.spec.window == "hidden":
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
        if self.spec.window == "hidden":
            return f"--headless {launcher}"
        return f"/d /c start /min {launcher}"

    @property
    def task_working_directory(self) -> WinPath:
        """The install folder: the launcher's relative name is looked up there."""
        return self.install_dir

    @property
    def launcher_watch_depth(self) -> int:
        """How many processes above the launcher's python.exe it watches: cmd.exe running the .bat,
        (hidden) conhost.exe, the task's own process, and (--env) the venv launcher,
        Scripts\\python.exe, which runs the base python.exe as its child."""
        return (2 if self.spec.window == "hidden" else 1) + (1 if self.spec.env else 0)

    @property
    def watch_depth(self) -> int:
        """How many processes above the server its watchdog watches: (--env) its own
        Scripts\\python.exe, the launcher's python.exe, and what the launcher watches."""
        return (1 if self.spec.env else 0) + 1 + self.launcher_watch_depth

    @property
    def state_dir(self) -> WinPath:
        """Machine-wide state of the install (receipt, logs of each run): administrators only."""
        return STATE_ROOT.join(self.spec.name)

    @property
    def receipt_path(self) -> WinPath:
        return self.state_dir.join("receipt.json")

    @property
    def state_log_dir(self) -> WinPath:
        """install.ps1's and uninstall.ps1's log of each run."""
        return self.state_dir.join("logs")

    @property
    def user_state_dir(self) -> WinPath:
        """Each user's state (logs, secret, runtime files): per-user, so each user's server writes
        only into that user's profile."""
        return WinPath("LOCALAPPDATA", f"gen-bundle\\{self.spec.name}")

    @property
    def user_files(self) -> UserFiles:
        """The files of the user's state folder, each a path."""
        return UserFiles(self.user_state_dir)

    @property
    def hosts_begin(self) -> str:
        return f"# BEGIN gen-bundle {self.spec.name}"

    @property
    def hosts_end(self) -> str:
        return f"# END gen-bundle {self.spec.name}"

    @property
    def hosts_lines(self) -> tuple[str, str, str]:
        """The marked block install.ps1 puts in the hosts file (hosts.txt), line by line."""
        return (self.hosts_begin, f"{self.spec.ip} {self.spec.name}", self.hosts_end)
