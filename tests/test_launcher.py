"""The launcher's loop (start-<name>.launcher.py), run for real on Linux with this machine's
python: the rendered file, unchanged, in an install folder of its own, started as the .bat starts
it (python -I, in the install folder). A stand-in ``notebook`` package, first on the server's
PYTHONPATH (which the launcher's -I does not read, and its server does), records how it was
started and exits as each test tells it. tests/test_server.py runs the real server under it.

What only Windows has is tested where it is: the .bat's line to python.exe under wine's cmd
(test_launcher_wine.py), the Win32 calls against Microsoft's tables (test_windows_api.py), and
the server's command line as Windows splits it (below, with wine's CommandLineToArgvW)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from generator.constants import BACKOFF_FIRST, LAUNCHER_GONE_EXIT, LOCK_RETRY, LOG_ROTATE_BYTES
from generator.layout import Layout
from generator.render import render
from generator.spec import build_spec

GONE = str(LAUNCHER_GONE_EXIT)
# What the launcher logs when it ends because the task's process has ended.
STOPPED = "the task's process has ended (the task was stopped, or install.ps1 stopped it); the launcher ends"

STAND_IN = r"""
import json, os, sys, time
record = os.environ["STAND_IN_RECORD"]
count = sum(1 for _ in open(record)) if os.path.exists(record) else 0
with open(record, "a") as file:
    file.write(json.dumps({"argv": sys.orig_argv, "cwd": os.getcwd(), "time": time.time(),
                           "pycache": os.environ.get("PYTHONPYCACHEPREFIX")}) + "\n")
print("stand-in server: started", flush=True)
print("stand-in server: stderr line", file=sys.stderr, flush=True)
plan = os.environ.get("STAND_IN_PLAN", GONE).split(",")
step = plan[min(count, len(plan) - 1)]
if "STAND_IN_SAY" in os.environ:
    print(os.environ["STAND_IN_SAY"], file=sys.stderr, flush=True)
if step.startswith("stable:"):  # what the real server's settings write after STABLE_AFTER s
    open(os.path.join(os.environ["STAND_IN_STATE"], "stable"), "w").close()
    step = step.split(":", 1)[1]
if ":" in step:  # "<seconds>:<exit code>"
    seconds, step = step.split(":")
    time.sleep(float(seconds))
if step == "stay":
    time.sleep(600)
sys.exit(int(step))
""".replace("GONE", repr(GONE))


class Site:
    """The launcher and the server's settings in an install folder, one user's profile folders,
    and the stand-in server on the server's PYTHONPATH."""

    def __init__(self, tmp_path: Path, spec, *, env=None) -> None:
        self.spec, self.layout = spec, Layout(spec)
        files = render(spec, env=env)
        self.install = tmp_path / "install"
        self.install.mkdir()
        for name in (self.layout.launcher_script_file, self.layout.config_file):
            (self.install / name).write_bytes(files[name])
        self.launcher = self.install / self.layout.launcher_script_file
        self.profile, self.local = tmp_path / "profile", tmp_path / "local"
        self.profile.mkdir()
        self.state = self.local / "gen-bundle" / spec.name
        stand_in = tmp_path / "stand-in" / "notebook"
        stand_in.mkdir(parents=True)
        (stand_in / "__init__.py").write_text("")
        (stand_in / "__main__.py").write_text(STAND_IN)
        self.record = tmp_path / "starts.jsonl"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.profile),
            "USERPROFILE": str(self.profile),
            "LOCALAPPDATA": str(self.local),
            "PYTHONPATH": str(stand_in.parent),
            "STAND_IN_RECORD": str(self.record),
            "STAND_IN_STATE": str(self.state),
        }

    def argv(self) -> list[str]:
        """The server's command line the launcher promises."""
        return [
            sys.executable,
            "-m",
            "notebook",
            "--no-browser",
            f"--ServerApp.root_dir={self.profile / 'Notebooks'}",
            f"--config={self.install / self.layout.config_file}",
        ]

    def start(self, plan: str = GONE, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-I", str(self.launcher)],
            cwd=self.install,
            env={**self.env, "STAND_IN_PLAN": plan, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(self, plan: str = GONE, **extra: str) -> tuple[int, str]:
        launcher = self.start(plan, **extra)
        try:
            output, _ = launcher.communicate(timeout=60)
        finally:
            stop(launcher)
        return launcher.returncode, output.decode("utf-8", "replace")

    def run_until(self, done, plan: str, timeout: float = 60, **extra: str) -> None:
        launcher = self.start(plan, **extra)
        try:
            deadline = time.monotonic() + timeout
            while not done() and time.monotonic() < deadline:
                assert launcher.poll() is None, launcher.stdout.read().decode() + self.log()
                time.sleep(0.1)
            assert done(), self.log()
        finally:
            stop(launcher)

    def starts(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def log(self, name: str = "launcher.log") -> str:
        path = self.state / name
        return path.read_bytes().decode("utf-8") if path.exists() else ""


def stop(process: subprocess.Popen) -> None:
    """The launcher and the stand-in it started: its session's process group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@pytest.fixture
def site(tmp_path) -> Site:
    return Site(tmp_path, build_spec(ip="127.0.0.13", name="py"))


def test_the_launcher_starts_the_server_with_the_intended_command_line(site):
    code, output = site.run(GONE)
    assert code == 0, output
    assert output == ""  # the launcher writes to its log only
    (start,) = site.starts()
    assert start["argv"] == site.argv()
    assert start["cwd"] == str(site.install)  # python -m finds modules in the (admin-only) install folder only
    assert start["pycache"] is None  # without --env, Python's own choice
    assert (site.profile / "Notebooks").is_dir()  # the notebook folder is created when missing
    assert site.log("server.log") == "stand-in server: started\nstand-in server: stderr line\n"
    lines = site.log().split("\r\n")
    assert [line[20:] for line in lines] == [
        "starting the notebook server for http://py/",
        f"the server exited with code {GONE}",
        STOPPED,
        "",
    ]
    assert all(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S") for line in lines[:-1])


def test_an_env_bundle_gives_the_server_a_compiled_module_folder_of_the_users_own(tmp_path, windows_env):
    site = Site(tmp_path, build_spec(ip="127.0.0.13", name="py", env=True), env=windows_env)
    assert site.run(GONE)[0] == 0
    assert [start["pycache"] for start in site.starts()] == [str(site.state / "pycache")]


def test_restarts_with_backoff_and_a_stable_run_resets_it(site):
    """Exits after 0 s, 0 s and (marked stable, as the real settings mark a run of STABLE_AFTER s)
    0 s: the waits are 5 s, 10 s, then 5 s again."""
    site.run_until(lambda: len(site.starts()) >= 4, "1,1,stable:1,stay", timeout=60)
    starts = site.starts()
    gaps = [b["time"] - a["time"] for a, b in pairwise(starts)]
    assert all(start["argv"] == site.argv() for start in starts)
    for gap, wait in zip(gaps, (BACKOFF_FIRST, 2 * BACKOFF_FIRST, BACKOFF_FIRST), strict=True):
        assert wait <= gap < wait + 2, gaps
    waits = [line.split("waiting ")[1] for line in site.log().splitlines() if "waiting " in line]
    assert waits == ["5 s before the next start", "10 s before the next start", "5 s before the next start"]
    assert site.log().count("the server exited with code 1") == 3
    print(f"\nrestart gaps: {', '.join(f'{gap:.2f} s' for gap in gaps)}")


@pytest.mark.parametrize(
    "says,error",
    [
        ("/usr/bin/python3: No module named notebook", "ERROR: the notebook package is not installed for "),
        ("Traceback: something else", None),
    ],
)
def test_a_known_failure_is_logged_with_its_fix_and_no_other(site, says, error):
    site.run_until(lambda: "waiting 5 s" in site.log(), "1", STAND_IN_SAY=says)
    errors = [line[20:] for line in site.log().splitlines() if "ERROR" in line]
    if error is None:
        assert errors == []
    else:
        assert errors == [f"{error}{sys.executable}. Fix: run that python.exe with -m pip install notebook."]


def test_a_server_that_cannot_start_is_logged_and_tried_again(site):
    """The notebook folder cannot be made (a file holds its name): the reason, then the back-off."""
    (site.profile / "Notebooks").write_text("not a folder")
    site.run_until(lambda: "waiting 10 s" in site.log(), GONE, timeout=30)
    log = site.log()
    assert log.count("ERROR: the server could not be started: ") == 2, log
    assert "Notebooks" in log.splitlines()[0]
    assert site.starts() == []


def test_auth_none_warns_loudly_in_the_log(tmp_path):
    site = Site(tmp_path, build_spec(ip="127.0.0.13", name="py", auth="none"))
    assert site.run(GONE)[0] == 0
    assert (
        "WARNING: sign-in is OFF (--auth none): any account of this PC that finds this user's server port "
        "can run code as this user." in site.log()
    )


def test_the_launcher_log_is_rotated_at_one_mebibyte(site):
    site.state.mkdir(parents=True)
    old = b"old line\r\n" * (LOG_ROTATE_BYTES // 10 + 1000)
    (site.state / "launcher.log").write_bytes(old)
    assert site.run(GONE)[0] == 0
    assert (site.state / "launcher.log.1").read_bytes() == old
    assert site.log().count("\r\n") == 3


def test_a_second_launcher_of_the_same_user_waits_and_then_takes_over(site):
    """The first launcher's server runs 8 s and says its launcher is gone; a second launcher
    started meanwhile starts no server, says why, and starts one once the first has ended."""
    first = site.start(f"8:{GONE},stay")
    try:
        deadline = time.monotonic() + 30
        while not site.starts() and time.monotonic() < deadline:
            time.sleep(0.1)
        second = site.start(f"8:{GONE},stay")
        try:
            deadline = time.monotonic() + 30
            while len(site.starts()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop(second)
    finally:
        stop(first)
    starts, log = site.starts(), site.log()
    assert len(starts) == 2, log
    assert 8 <= starts[1]["time"] - starts[0]["time"] < 8 + LOCK_RETRY + 2  # not while the first server ran
    assert log.count("another launcher for http://py/ already runs for this user") == 1, log
    assert log.index("already runs") < log.index(STOPPED) < log.index("takes over")


def test_the_launcher_ends_when_what_runs_it_has_ended(site):
    """Task Scheduler ends the task's own process, not what it started: the launcher watches the
    processes above it (on Linux: its parent, by its parent's id) and ends when that one has."""
    task = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.Popen(sys.argv[1:]); input()",
            sys.executable,
            "-I",
            str(site.launcher),
        ],
        cwd=site.install,
        env={**site.env, "STAND_IN_PLAN": "stay"},
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not site.starts() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert site.starts(), site.log()
        task.kill()  # as Task Scheduler ends a stopped task's process
        deadline = time.monotonic() + 10
        while "the launcher ends" not in site.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop(task)
    assert site.log().splitlines()[-1].endswith(" " + STOPPED), site.log()


def test_a_launcher_that_cannot_take_its_lock_says_why_and_ends(site):
    """Not a second launcher but a fault (here launcher.lock is a folder): the reason is logged and
    the launcher ends with 1, rather than a traceback in a console nobody sees."""
    (site.state / "launcher.lock").mkdir(parents=True)
    code, output = site.run(GONE)
    assert code == 1, output
    assert site.starts() == []
    (line,) = site.log().splitlines()
    assert line[20:].startswith("ERROR: the launcher cannot start: "), line
    assert "launcher.lock" in line and line.endswith("; the launcher ends"), line


def test_a_waiting_launcher_ends_when_what_runs_it_has_ended(site):
    """A second launcher, waiting for the first, watches the task's process too: stopped while it
    waits, it ends then, and never takes over (0.3.13's .bat waited on)."""
    import fcntl

    site.state.mkdir(parents=True)
    held = os.open(site.state / "launcher.lock", os.O_WRONLY | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # the first launcher
    task = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.Popen(sys.argv[1:]); input()",
            sys.executable,
            "-I",
            str(site.launcher),
        ],
        cwd=site.install,
        env={**site.env, "STAND_IN_PLAN": "stay"},
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "already runs" not in site.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "already runs" in site.log()
        task.kill()
        deadline = time.monotonic() + 10
        while STOPPED not in site.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.close(held)  # the first launcher ends: a launcher still waiting would take over now
        time.sleep(LOCK_RETRY + 1)
    finally:
        stop(task)
    assert site.log().splitlines()[-1].endswith(" " + STOPPED), site.log()
    assert site.starts() == []
