"""The launcher, run by wine's cmd.exe as the logon task runs it, with a stub
python.exe that records the command line it is given and exits as told."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from itertools import pairwise

import pytest

from generator.layout import BACKOFF_FIRST, LAUNCHER_GONE_EXIT, LOCK_RETRY, Layout
from generator.render import render, server_python
from generator.spec import build_spec

from conftest import need
from support.wine import WINE_OEM_CODEPAGE

GONE = str(LAUNCHER_GONE_EXIT)  # a stub that exits with this ends the launcher's loop


def expected_argv(spec, python_exe: str, notebook_dir: str, config: str) -> list[str]:
    """What python.exe must receive: the command line the launcher promises."""
    return [
        python_exe,
        "-m",
        "notebook",
        "--no-browser",
        f"--ServerApp.root_dir={notebook_dir}",
        f"--config={config}",
    ]


def as_wine_reads(text: str) -> str:
    """Wine's cmd decodes the UTF-8 file in its OEM code page (no chcp 65001)."""
    return text.encode("utf-8").decode(WINE_OEM_CODEPAGE)


class Installed:
    """The launcher and its config where install.ps1 puts them, the stub where --python points."""

    def __init__(self, wine, spec, *, stub: bool = True, env=None) -> None:
        self.wine, self.spec = wine, spec
        self.files = files = render(spec, env=env)
        self.bat = wine.expand(str(Layout(spec).launcher_path))
        self.config = wine.expand(str(Layout(spec).config_path))
        self.guard = wine.expand(str(Layout(spec).guard_path))
        placed = (
            (Layout(spec).launcher_file, self.bat),
            (Layout(spec).config_file, self.config),
            (Layout(spec).guard_file, self.guard),
        )
        for name, windows in placed:
            host = wine.host_path(windows)
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(files[name])
        self.python = as_wine_reads(wine.expand(str(server_python(spec, env))))
        self.notebook_dir = as_wine_reads(wine.expand(str(spec.notebook_dir)))
        self.host_notebook_dir = wine.host_path(self.notebook_dir)
        self.log_dir = wine.host_path(wine.expand(str(Layout(spec).user_state_dir)))
        # Start from a user who never ran it: no notebook folder, no logs.
        if self.host_notebook_dir.exists() and self.host_notebook_dir != wine.drive_c:
            shutil.rmtree(self.host_notebook_dir)
        if self.log_dir.exists():
            shutil.rmtree(self.log_dir)
        stub_host = wine.host_path(self.python)
        if stub:
            wine.install_stub(self.python)
        elif stub_host.exists():
            stub_host.unlink()

    def argv(self) -> list[str]:
        return expected_argv(self.spec, self.python, self.notebook_dir, self.config)

    def guard_argv(self, mode: str) -> list[str]:
        return [self.python, "-I", self.guard, mode]

    def log(self, name: str = "launcher.log") -> str:
        path = self.log_dir / name
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@pytest.mark.wine
def test_canonical_launcher_starts_the_server_with_the_intended_command_line(wine):
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    result = wine.run_bat(site.bat, plan=GONE)
    assert result.argv_records == [site.argv()], result.output
    assert wine.guard_calls() == []  # nothing is asked before a start: the broker holds the address
    assert result.exit_code == 0  # the server said its launcher is gone: the loop ends
    assert site.host_notebook_dir.is_dir()  # root_dir is created when missing
    server_log = site.log("server.log")
    assert "stub python.exe: started" in server_log and "stub python.exe: stderr line" in server_log
    log = site.log()
    assert "starting the notebook server for http://py/\n" in log
    assert f"the server exited with code {GONE}" in log
    assert "the task was stopped; the launcher ends" in log
    assert "WARNING" not in log


@pytest.mark.wine
def test_an_env_bundle_launcher_starts_the_environments_python(wine, windows_env):
    """--env: the launcher runs the environment's Scripts\\python.exe, for the server and the guard
    alike, and hands the server a compiled-module folder of the user's own."""
    spec = build_spec(ip="127.0.0.13", name="py", env=True)
    site = Installed(wine, spec, env=windows_env)
    assert site.python.endswith(f"\\gen-bundle\\py\\{windows_env.folder}\\Scripts\\python.exe")
    result = wine.run_bat(site.bat, plan=GONE)
    assert result.argv_records == [site.argv()], result.output
    assert wine.guard_calls() == []
    assert result.exit_code == 0
    cache = as_wine_reads(wine.expand(str(Layout(spec).user_state_dir.join("pycache"))))
    assert f"stub python.exe: PYTHONPYCACHEPREFIX={cache}" in site.log("server.log")
    # Without --env the launcher leaves Python's own choice alone.
    plain = Installed(wine, build_spec(ip="127.0.0.13", name="py"))
    wine.run_bat(plain.bat, plan=GONE)
    assert "PYTHONPYCACHEPREFIX" not in plain.log("server.log")


@pytest.mark.wine
def test_the_launcher_runs_no_program_that_a_folder_on_path_holds(wine, tmp_path):
    """A folder on PATH before System32 (a user's own, or one an installer added to the system
    PATH) holds chcp, ping and find: the launcher names each program by its full path, so
    cmd.exe runs none of them. The same launcher with the bare `chcp` of earlier versions runs
    the planted one: the test can fail."""
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "ran.txt"
    for program in ("chcp", "ping", "find"):
        (planted / f"{program}.bat").write_bytes(
            f"@echo off\r\necho {program}>>{wine.windows_path(marker)}\r\n".encode("ascii")
        )
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
]


@pytest.mark.wine
@pytest.mark.parametrize("notebook_dir", HOSTILE_DIRS)
def test_hostile_paths_reach_python_unchanged(wine, notebook_dir):
    python = r"C:\Tools & Co\Python 3 (x64) 100%\python.exe"
    spec = build_spec(ip="127.0.0.42", name="lab-1", port=8080, notebook_dir=notebook_dir, python=python)
    site = Installed(wine, spec)
    result = wine.run_bat(site.bat, plan=GONE)
    assert result.exit_code == 0, result.output
    assert result.argv_records == [site.argv()], result.output
    assert site.host_notebook_dir.is_dir()
    assert "the task was stopped" in site.log()


@pytest.mark.wine
def test_restarts_with_backoff_after_the_server_exits(wine):
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    result = wine.run_bat_until(site.bat, lambda: len(wine.starts()) >= 3, plan="1,1,stay")
    starts = result.starts
    assert len(starts) == 3, result.output + site.log()
    assert all(start.argv == site.argv() for start in starts)
    gaps = [(b.time_ms - a.time_ms) / 1000 for a, b in pairwise(starts)]
    # The launcher waits 5 s, then 10 s; ping needs up to a second more to start and stop.
    assert BACKOFF_FIRST <= gaps[0] < BACKOFF_FIRST + 3, gaps
    assert 2 * BACKOFF_FIRST <= gaps[1] < 2 * BACKOFF_FIRST + 3, gaps
    log = site.log()
    assert log.count("starting the notebook server") == 3
    assert log.count("the server exited with code 1") == 2
    assert "waiting 5 s before the next start" in log and "waiting 10 s before the next start" in log
    print(f"\nrestart gaps under wine: {gaps[0]:.2f} s, {gaps[1]:.2f} s")


@pytest.mark.wine
def test_missing_python_is_reported_and_retried_with_backoff(wine):
    spec = build_spec(ip="127.0.0.13", name="py", python=r"C:\Missing Python\python.exe")
    site = Installed(wine, spec, stub=False)
    wine.run_bat_until(site.bat, lambda: "waiting 10 s" in site.log())
    log = site.log()
    assert log.count('ERROR: python.exe not found: "C:\\Missing Python\\python.exe". Fix: install Python') == 2
    assert "waiting 5 s before the next start" in log
    assert "waiting 10 s before the next start" in log
    assert "starting the notebook server" not in log


@pytest.mark.wine
@pytest.mark.parametrize(
    "server_says,logged",
    [("C:\\Python\\python.exe: No module named notebook", "ERROR: the notebook package is not installed")],
)
def test_known_failures_are_logged_with_their_fix(wine, server_says, logged):
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    wine.run_bat_until(site.bat, lambda: "waiting 5 s" in site.log(), plan="1", say=server_says)
    log = site.log()
    assert "the server exited with code 1" in log
    assert [line for line in log.splitlines() if "ERROR" in line] == [
        line for line in log.splitlines() if logged in line
    ], log
    assert logged in log


@pytest.mark.wine
def test_a_plain_failure_is_not_mistaken_for_a_known_one(wine):
    site = Installed(wine, build_spec(ip="127.0.0.13", name="py"))
    wine.run_bat_until(site.bat, lambda: "waiting 5 s" in site.log(), plan="1")
    assert "the server exited with code 1" in site.log()
    assert "ERROR" not in site.log()


@pytest.mark.wine
def test_auth_none_warns_loudly_in_the_log(wine):
    spec = build_spec(ip="127.0.0.13", name="py", auth="none")
    site = Installed(wine, spec)
    wine.run_bat(site.bat, plan=GONE)
    assert (
        "WARNING: sign-in is OFF (--auth none): any account of this PC that finds this user's server port" in site.log()
    )


@pytest.mark.wine
def test_launcher_log_is_rotated_at_one_mebibyte(wine):
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    site.log_dir.mkdir(parents=True)
    (site.log_dir / "launcher.log").write_bytes(b"old line\r\n" * 110_000)  # 1.1 MB
    run = wine.run_bat(site.bat, plan=GONE)
    # Once seen failing in a full run (launcher.log.1 missing) and never alone: say what happened.
    assert (site.log_dir / "launcher.log.1").exists(), (run.exit_code, run.output[-2000:], site.log()[-2000:])
    assert (site.log_dir / "launcher.log.1").stat().st_size == 1_100_000
    assert (site.log_dir / "launcher.log").stat().st_size < 4096


@pytest.mark.wine
def test_a_second_launcher_of_the_same_user_waits_and_then_takes_over(wine):
    """The first launcher's server runs 8 s; a second launcher started meanwhile starts no
    server, says why, and starts one once the first launcher has ended."""
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    host_bat = wine.host_path(site.bat)
    data = host_bat.read_bytes()
    retry = f"set /a PINGS={LOCK_RETRY}+1".encode()
    assert data.count(retry) == 1
    host_bat.write_bytes(data.replace(retry, b"set /a PINGS=2+1"))  # retry every 2 s, not every minute
    env = wine._bat_env(0, f"8:{GONE},stay")
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    first = subprocess.Popen(["wine", "cmd", "/d", "/c", site.bat], **quiet)
    try:
        deadline = time.monotonic() + 60
        while not wine.starts() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(wine.starts()) == 1, site.log()
        second = subprocess.Popen(["wine", "cmd", "/d", "/c", site.bat], **quiet)
        deadline = time.monotonic() + 60
        while len(wine.starts()) < 2 and time.monotonic() < deadline and second.poll() is None:
            time.sleep(0.2)
    finally:
        wine.stop()
        first.wait(timeout=30)
    starts = wine.starts()
    log = site.log()
    assert len(starts) == 2, log
    assert starts[1].time_ms - starts[0].time_ms >= 8000  # not while the first server ran
    assert log.count("another launcher for http://py/ already runs for this user") == 1, log
    assert log.index("already runs") < log.index("the task was stopped; the launcher ends") < log.index("takes over")
    assert log.count("starting the notebook server") == 2


@pytest.mark.wine
def test_the_launcher_starts_the_server_without_asking_the_guard(wine):
    """Behind the broker the server listens on a port Windows picks: nothing can hold it first, so
    the launcher asks nothing before a start, even of a guard that would say no."""
    site = Installed(wine, build_spec(ip="127.0.0.13", name="py"))
    wine.guard_env = {"STUB_GUARD": "1", "STUB_GUARD_SAY": "the guard was asked"}
    try:
        wine.run_bat(site.bat, plan=GONE)
    finally:
        wine.guard_env = {}
    assert wine.guard_calls() == []
    assert [start.argv for start in wine.starts()] == [site.argv()]
    assert "the guard was asked" not in site.log()


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
