"""Running generated .bat files under wine's cmd.exe with a stub python.exe.

Facts this relies on (checked on wine 8): cmd waits for a Windows .exe and
returns its exit code; wine's cmd reads a batch file in the OEM code page
(437 here) and has no ``chcp 65001``, so non-ASCII bytes arrive decoded as
cp437 - the tests compare against that decoding; and wine's cmd expands %
again inside an expanded variable, which the launcher avoids by writing
every value inline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

STUB_SOURCE = Path(__file__).with_name("python_stub.c")
CHAIN_HELPER_SOURCE = Path(__file__).with_name("chain_helper.c")
WINE_OEM_CODEPAGE = "cp437"


@dataclass
class Start:
    """One start of the stub python.exe: when, and the argv it was given."""

    time_ms: int
    argv: list[str]


@dataclass
class BatRun:
    exit_code: int | None
    output: str
    starts: list[Start]

    @property
    def argv_records(self) -> list[list[str]]:
        return [start.argv for start in self.starts]


def wine_never_started(run: BatRun) -> bool:
    """True when wine failed to start cmd.exe itself: its loader fell back to ShellExecuteEx,
    which failed, and nothing of the batch file ran. Seen once in CI right after an earlier
    example ended wine; not something a bundle can cause."""
    return run.exit_code == 1 and not run.starts and run.output.startswith("Application could not be started")


class Wine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = root / "prefix"
        self.env = {
            **os.environ,
            "WINEPREFIX": str(self.prefix),
            "WINEDEBUG": "-all",
            "WINEDLLOVERRIDES": "mscoree,mshtml=",
            "DISPLAY": "",
        }
        self.stub = root / "python_stub.exe"
        subprocess.run(
            ["x86_64-w64-mingw32-gcc", "-O2", "-o", str(self.stub), str(STUB_SOURCE), "-lshell32"],
            check=True,
        )
        self.chain_helper = root / "chain_helper.exe"
        subprocess.run(
            [
                "x86_64-w64-mingw32-gcc",
                "-O2",
                "-municode",
                "-o",
                str(self.chain_helper),
                str(CHAIN_HELPER_SOURCE),
                "-lshell32",
            ],
            check=True,
        )
        # Creating the prefix takes a few seconds; do it once, up front.
        subprocess.run(["wine", "cmd", "/c", "exit 0"], env=self.env, check=True, capture_output=True, timeout=180)
        self.drive_c = self.prefix / "drive_c"
        self.guard_env: dict[str, str] = {}  # STUB_GUARD, STUB_GUARD_SAY for the next runs
        self.user_home = self.drive_c / "users" / os.environ.get("USER", "root")

    def windows_path(self, path: Path) -> str:
        """A Linux path as wine's programs name it (drive Z: is /)."""
        return "Z:" + str(path).replace("/", "\\")

    def environment(self) -> dict[str, str]:
        """The variables wine's processes see, as cmd's ``set`` lists them."""
        proc = subprocess.run(["wine", "cmd", "/c", "set"], env=self.env, capture_output=True, check=True, timeout=60)
        pairs = (line.split("=", 1) for line in proc.stdout.decode("utf-8", "replace").splitlines() if "=" in line)
        return {name: value.rstrip("\r") for name, value in pairs}

    def split_command_line(self, line: str) -> list[str]:
        """Windows' CommandLineToArgvW, run in wine on ``line`` exactly."""
        source, fields = self.root / "split.in", self.root / "split.out"
        source.write_bytes(line.encode("utf-8"))
        subprocess.run(
            ["wine", str(self.chain_helper), "split", self.windows_path(source), self.windows_path(fields)],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        return [part.decode("utf-8") for part in fields.read_bytes().split(b"\0")[:-1]]

    def _line_argv(self, directory: str, line: str) -> list[str]:
        source = self.root / "run.in"
        source.write_bytes(f"{directory}\n{line}".encode())
        return ["wine", str(self.chain_helper), "run", self.windows_path(source)]

    def run_line(self, directory: str, line: str, *, plan: str | None = None, timeout: float = 60) -> BatRun:
        """Start ``line`` with CreateProcessW exactly as written, in ``directory``, and wait."""
        proc = subprocess.run(
            self._line_argv(directory, line), env=self._bat_env(0, plan), capture_output=True, timeout=timeout
        )
        return BatRun(proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace"), self.starts())

    def run_line_until(
        self, directory: str, line: str, done, *, plan: str | None = None, timeout: float = 90
    ) -> BatRun:
        """The same for a line that never ends by itself: until ``done()``, then end wine.

        The line's own process may end first (``start`` without /wait leaves its child
        running): then its children get 20 s more.
        """
        return self._run_until(self._line_argv(directory, line), done, plan=plan, say=None, timeout=timeout, grace=20)

    def close(self) -> None:
        self.stop()

    def host_path(self, windows_path: str) -> Path:
        """The Linux path behind a C:\\ path of this prefix."""
        pure = PureWindowsPath(windows_path)
        if pure.drive.upper() != "C:":
            raise ValueError(f"only C: paths map into the prefix: {windows_path}")
        path = self.drive_c
        for part in pure.parts[1:]:  # wine matches names case-insensitively
            if path.is_dir():
                part = next((e.name for e in path.iterdir() if e.name.lower() == part.lower()), part)
            path = path / part
        return path

    def expand(self, text: str) -> str:
        """Expand the few variables the launcher uses, as wine defines them."""
        values = {
            "%USERPROFILE%": f"C:\\users\\{os.environ.get('USER', 'root')}",
            "%LOCALAPPDATA%": f"C:\\users\\{os.environ.get('USER', 'root')}\\AppData\\Local",
            "%APPDATA%": f"C:\\users\\{os.environ.get('USER', 'root')}\\AppData\\Roaming",
            "%ProgramFiles%": "C:\\Program Files",
            "%SystemDrive%": "C:",
        }
        for name, value in values.items():
            if text.startswith(name):
                return value + text[len(name) :]
        return text

    def install_stub(self, windows_path: str) -> Path:
        target = self.host_path(windows_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.stub, target)
        return target

    @property
    def stub_log(self) -> Path:
        return self.root / "stub-argv.log"

    @property
    def guard_log(self) -> Path:
        return self.stub_log.with_name(self.stub_log.name + ".guard")

    def guard_calls(self) -> list[list[str]]:
        """The argv of each run of the guard script (python.exe -I guard.py ...)."""
        if not self.guard_log.exists():
            return []
        return [
            [field.decode("utf-8") for field in line.split(b"\0")[:-1]]
            for line in self.guard_log.read_bytes().split(b"\n")
            if line
        ]

    def _bat_env(
        self, stub_exit: int, plan: str | None, say: str | None = None, path_first: str | None = None
    ) -> dict[str, str]:
        for stale in (self.stub_log, self.stub_log.with_name(self.stub_log.name + ".count"), self.guard_log):
            stale.unlink(missing_ok=True)
        env = {**self.env, "STUB_LOG": "Z:" + str(self.stub_log).replace("/", "\\"), "STUB_EXIT": str(stub_exit)}
        if path_first is not None:
            env["WINEPATH"] = path_first  # put before the PATH of wine's processes (wine(1): WINEPATH)
        env.update(self.guard_env)
        if plan is not None:
            env["STUB_PLAN"] = plan
        if say is not None:
            env["STUB_SAY"] = say
        return env

    def starts(self) -> list[Start]:
        """What the stub recorded so far."""
        found = []
        if self.stub_log.exists():
            for line in self.stub_log.read_bytes().split(b"\n"):
                if line:
                    fields = [part.decode("utf-8") for part in line.split(b"\0")[:-1]]
                    found.append(Start(int(fields[0][2:]), fields[1:]))
        return found

    def stop(self) -> None:
        """End every process of this prefix and wait until its wineserver has gone.

        ``wineserver -k`` only asks; a wine program started while the old server is still
        ending can fail to start at all (wine then says "ShellExecuteEx failed: Internal
        error"), so the next run would test wine, not the bundle.
        """
        subprocess.run(["wineserver", "-k"], env=self.env, check=False)
        subprocess.run(["wineserver", "-w"], env=self.env, check=False, timeout=60)

    def run_bat(
        self,
        bat: str,
        *,
        stub_exit: int = 0,
        plan: str | None = None,
        say: str | None = None,
        timeout: float = 60,
        path_first: str | None = None,
    ) -> BatRun:
        """Run the batch file at the Windows path ``bat`` as a logon task would (``path_first``: a
        folder searched before the others of PATH)."""
        for attempt in (1, 2):
            proc = subprocess.run(
                ["wine", "cmd", "/d", "/c", bat],
                env=self._bat_env(stub_exit, plan, say, path_first),
                capture_output=True,
                timeout=timeout,
            )
            run = BatRun(proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace"), self.starts())
            if attempt == 2 or not wine_never_started(run):
                return run
            self.stop()
        raise AssertionError("unreachable")

    def run_bat_until(
        self, bat: str, done, *, plan: str | None = None, say: str | None = None, timeout: float = 90
    ) -> BatRun:
        """Run a launcher that never ends by itself until ``done()`` is true, then end wine."""
        return self._run_until(["wine", "cmd", "/d", "/c", bat], done, plan=plan, say=say, timeout=timeout)

    def _run_until(
        self, argv: list[str], done, *, plan: str | None, say: str | None, timeout: float, grace: float = 0
    ) -> BatRun:
        import time

        proc = subprocess.Popen(
            argv,
            env=self._bat_env(0, plan, say),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        try:
            ended = False
            while not done() and time.monotonic() < deadline:
                if not ended and proc.poll() is not None:
                    ended = True
                    deadline = min(deadline, time.monotonic() + grace)
                time.sleep(0.2)
        finally:
            self.stop()
            output = proc.communicate(timeout=30)[0]
        return BatRun(proc.returncode, output.decode("utf-8", "replace"), self.starts())
