"""The .bat, run by wine's cmd.exe as the logon task runs it, with a stub python.exe that
records the command line it is given and exits as told: the .bat hands python.exe the launcher's
script (whose loop test_launcher.py runs on Linux), or, for the Start-menu entry, the guard."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from generator.layout import Layout
from generator.render import render
from generator.spec import build_spec

from conftest import need
from support.wine import WINE_OEM_CODEPAGE

GONE = "0"  # the launcher's script ended (the task was stopped): the .bat ends with its code


def as_wine_reads(text: str) -> str:
    """Wine's cmd decodes the UTF-8 file in its OEM code page (no chcp 65001)."""
    return text.encode("utf-8").decode(WINE_OEM_CODEPAGE)


class Installed:
    """The .bat, the launcher's script, the server's settings and the guard where install.ps1 puts
    them, the stub where --python points."""

    def __init__(self, wine, spec, *, stub: bool = True, env=None) -> None:
        self.wine, self.spec = wine, spec
        self.files = files = render(spec, env=env)
        self.bat = wine.expand(str(Layout(spec).launcher_path))
        self.script = wine.expand(str(Layout(spec).launcher_script_path))
        self.config = wine.expand(str(Layout(spec).config_path))
        self.guard = wine.expand(str(Layout(spec).guard_path))
        placed = (
            (Layout(spec).launcher_file, self.bat),
            (Layout(spec).launcher_script_file, self.script),
            (Layout(spec).config_file, self.config),
            (Layout(spec).guard_file, self.guard),
        )
        for name, windows in placed:
            host = wine.host_path(windows)
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(files[name])
        self.python = as_wine_reads(wine.expand(str(Layout(spec).server_python(env.folder if env else None))))
        self.log_dir = wine.host_path(wine.expand(str(Layout(spec).user_state_dir)))
        # Start from a user who never ran it: no logs.
        if self.log_dir.exists():
            shutil.rmtree(self.log_dir)
        stub_host = wine.host_path(self.python)
        if stub:
            wine.install_stub(self.python)
        elif stub_host.exists():
            stub_host.unlink()

    def argv(self) -> list[str]:
        """What python.exe must receive: the launcher's script, isolated (-I)."""
        return [self.python, "-I", self.script]

    def guard_argv(self, mode: str) -> list[str]:
        return [self.python, "-I", self.guard, mode]

    def log(self, name: str = "launcher.log") -> str:
        path = self.log_dir / name
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@pytest.mark.wine
@pytest.mark.parametrize("code", [0, 1, 86])
def test_the_bat_runs_the_launchers_script_and_ends_with_its_code(wine, code):
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    result = wine.run_bat(site.bat, plan=str(code))
    assert result.argv_records == [site.argv()], result.output
    assert result.exit_code == code
    assert wine.guard_calls() == []  # nothing is asked before a start: the broker holds the address
    assert not site.log_dir.exists()  # the script, not the .bat, makes the user's folder and logs


@pytest.mark.wine
def test_an_env_bundle_bat_runs_the_environments_python(wine, windows_env):
    """--env: the .bat runs the environment's Scripts\\python.exe, for the launcher and the guard alike."""
    spec = build_spec(ip="127.0.0.13", name="py", env=True)
    site = Installed(wine, spec, env=windows_env)
    assert site.python.endswith(f"\\gen-bundle\\py\\{windows_env.folder}\\Scripts\\python.exe")
    result = wine.run_bat(site.bat, plan=GONE)
    assert result.argv_records == [site.argv()], result.output
    assert result.exit_code == 0


@pytest.mark.wine
def test_the_bat_runs_no_program_that_a_folder_on_path_holds(wine, tmp_path):
    """A folder on PATH before System32 (a user's own, or one an installer added to the system
    PATH) holds chcp: the .bat names it by its full path, so cmd.exe does not run the planted one.
    The same .bat with the bare `chcp` of earlier versions runs it: the test can fail."""
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "ran.txt"
    (planted / "chcp.bat").write_bytes(f"@echo off\r\necho chcp>>{wine.windows_path(marker)}\r\n".encode("ascii"))
    result = wine.run_bat(site.bat, plan=GONE, path_first=wine.windows_path(planted))
    assert result.argv_records == [site.argv()], result.output
    assert not marker.exists(), marker.read_text()
    old = site.files[Layout(spec).launcher_file].replace(
        b'"%SystemRoot%\\System32\\chcp.com" 65001 >nul', b"chcp 65001 >nul"
    )
    assert old != site.files[Layout(spec).launcher_file]
    wine.host_path(site.bat).write_bytes(old)
    wine.run_bat(site.bat, plan=GONE, path_first=wine.windows_path(planted))
    assert marker.read_text().split() == ["chcp"]


HOSTILE_DIRS = [
    r"C:\Data\50% off & more (v2) ^caret !bang 'quote'",
    r"C:\Users\Public\%USERPROFILE% is literal here",
    r"C:\a;b,c=d`e~f@g#h$i{j}k[l]m+n",
    "C:\\Zoë\\Ünïcödé ‘curly’ 日本",
    "C:\\",
    "C:\\Trailing Space Folder\\",
]


@pytest.mark.wine
def test_hostile_paths_reach_python_unchanged(wine):
    python = r"C:\Tools & Co\Python 3 (x64) 100%\python.exe"
    spec = build_spec(ip="127.0.0.42", name="lab-1", port=8080, python=python)
    site = Installed(wine, spec)
    result = wine.run_bat(site.bat, plan=GONE)
    assert result.exit_code == 0, result.output
    assert result.argv_records == [site.argv()], result.output
    assert site.argv()[0] == python


@pytest.mark.wine
@pytest.mark.parametrize("notebook_dir", HOSTILE_DIRS)
def test_the_servers_command_line_reaches_it_unchanged_on_windows(wine, notebook_dir):
    """The launcher starts the server with an argument list; on Windows, subprocess joins it with
    list2cmdline (Python's documented rule) and the server's C runtime splits it again as
    CommandLineToArgvW does (they differ only on "" inside quotes, which list2cmdline never
    writes). Windows' own split, in wine, gives back every argument, hostile folders included.
    A join by plain spaces, as a shell line would, does not: the check can fail."""
    layout = Layout(build_spec(ip="127.0.0.13", name="py"))
    argv = [
        r"C:\Tools & Co\Py 3 (x64) 100%\python.exe",
        "-m",
        "notebook",
        "--no-browser",
        f"--ServerApp.root_dir={notebook_dir}",
        f"--config=C:\\Program Files\\gen-bundle\\py\\{layout.config_file}",
    ]
    assert wine.split_command_line(subprocess.list2cmdline(argv)) == argv
    assert wine.split_command_line(" ".join(f'"{arg}"' for arg in argv)) != argv or not notebook_dir.endswith("\\")


@pytest.mark.wine
def test_a_missing_python_is_logged_with_its_fix_and_ends_the_bat(wine):
    spec = build_spec(ip="127.0.0.13", name="py", python=r"C:\Missing Python\python.exe")
    site = Installed(wine, spec, stub=False)
    result = wine.run_bat(site.bat)
    assert result.exit_code == 2
    assert result.starts == []
    (line,) = site.log().splitlines()
    assert line.endswith(
        'ERROR: python.exe not found: "C:\\Missing Python\\python.exe"; the launcher ends. Fix: install Python '
        "with the notebook package there (or make a new bundle with the right --python), then run install.ps1 "
        "again or log on again: either starts the launcher."
    ), line


@pytest.mark.wine
@pytest.mark.parametrize("answer", [0, 1])
def test_open_runs_only_the_guard(wine, answer):
    """The Start-menu entry's line (cmd.exe with the arguments install.ps1 gives the entry,
    in the install folder): the guard decides; no server, lock or log is touched."""
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    wine.guard_env = {"STUB_GUARD": str(answer)}
    try:
        result = wine.run_line(
            site.bat.rsplit("\\", 1)[0], f"C:\\windows\\system32\\cmd.exe {Layout(spec).shortcut_arguments}"
        )
    finally:
        wine.guard_env = {}
    assert result.exit_code == answer
    assert wine.guard_calls() == [site.guard_argv("open")]
    assert wine.starts() == []
    assert not site.log_dir.exists()


@pytest.mark.wine
def test_a_missing_install_folder_ends_the_launcher_with_its_reason(wine):
    """Run from anywhere but its install folder (here: it was removed), the launcher stops at once."""
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    elsewhere = "C:\\stray\\" + Layout(spec).launcher_file
    wine.host_path(elsewhere).parent.mkdir(parents=True, exist_ok=True)
    wine.host_path(elsewhere).write_bytes(site.files[Layout(spec).launcher_file])
    shutil.rmtree(wine.host_path(site.bat).parent)
    result = wine.run_bat(elsewhere)
    assert result.exit_code == 3
    assert result.starts == []
    assert (
        'ERROR: cannot change to the install folder "C:\\Program Files\\gen-bundle\\py"; the launcher ends.'
        in site.log()
    )


def blinter_errors(tmp_path, name: str, data: bytes) -> list[dict]:
    need(shutil.which("blinter") or _has_module("blinter"), "blinter (pip install blinter)")
    bat = tmp_path / name
    bat.write_bytes(data)
    report = tmp_path / (name + ".json")
    proc = subprocess.run(
        [sys.executable, "-m", "blinter", str(bat), "--no-config", "--format", "json", "--output", str(report)],
        capture_output=True,
        text=True,
    )
    need(report.exists(), f"blinter's report (python -m blinter: {proc.stderr.strip()[:200]})")
    return [issue for issue in json.loads(report.read_text())["issues"] if issue["severity"] == "Error"]


@pytest.mark.parametrize("auth", ["token", "none"])
def test_blinter_finds_no_errors(tmp_path, auth):
    spec = build_spec(ip="127.0.0.13", name="py", auth=auth)
    assert blinter_errors(tmp_path, Layout(spec).launcher_file, render(spec)[Layout(spec).launcher_file]) == []


def test_blinter_would_see_a_broken_launcher(tmp_path):
    broken = b"@echo off\r\ngoto nowhere\r\n"
    assert [issue["code"] for issue in blinter_errors(tmp_path, "broken.bat", broken)] == ["E002"]


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
