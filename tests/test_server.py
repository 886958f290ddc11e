"""End to end: the command line the launcher builds (recorded under wine),
replayed with the real notebook server on Linux, probed over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from generator.layout import LAUNCHER_GONE_EXIT, Layout
from generator.render import render
from generator.spec import build_spec

from conftest import need
from test_launcher_wine import GONE, Installed


def free_port(ip: str) -> int:
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


@dataclass
class Replay:
    """The recorded argv, mapped onto this machine; everything else verbatim."""

    argv: list[str]
    env: dict[str, str]
    home: Path
    ip: str
    port: int
    root_dir: Path
    spec: object
    processes: list = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.home / "local" / "gen-bundle" / self.spec.name

    @property
    def legacy_shortcut(self) -> Path:
        programs = self.home / "roaming" / "Microsoft" / "Windows" / "Start Menu" / "Programs"
        return programs / Layout(self.spec).legacy_shortcut_name

    def start(self, log_name: str = "server.log") -> subprocess.Popen:
        """Start the server as the launcher does: its output to a file in the user's log folder."""
        self.state.mkdir(parents=True, exist_ok=True)
        log = open(self.state / log_name, "ab")
        proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return proc

    def wait_ready(self, proc, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, (self.state / "server.log").read_text()
            try:
                if request(self, "GET", "/api", host=self.spec.name).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not answer in time")

    def stop_all(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: str


def request(replay: Replay, method: str, path: str, *, host: str, cookies: dict | None = None, headers=None) -> Answer:
    conn = http.client.HTTPConnection(replay.ip, replay.port, timeout=10)
    sent = {"Host": host, **(headers or {})}
    if cookies:
        sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    conn.request(method, path, headers=sent)
    answer = conn.getresponse()
    body = answer.read().decode("utf-8", "replace")
    conn.close()
    if cookies is not None:
        for header in answer.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            cookies[name.strip()] = rest.split(";", 1)[0]
    return Answer(answer.status, answer.headers, body)


def browse(replay: Replay, path: str, *, host: str, cookies: dict) -> Answer:
    """GET as a browser does: following redirects, keeping cookies."""
    for _ in range(6):
        answer = request(replay, "GET", path, host=host, cookies=cookies)
        if answer.status not in (301, 302, 303, 307, 308):
            return answer
        location = answer.headers["Location"]
        assert location.startswith("/"), location  # never off to another host
        path = location
    raise AssertionError("too many redirects")


def replay_of(wine, tmp_path: Path, spec) -> Replay:
    """Run the generated launcher under wine, then map its python argv to Linux."""
    site = Installed(wine, spec)
    result = wine.run_bat(site.bat, plan=GONE)
    (argv,) = result.argv_records
    assert argv == site.argv()  # the launcher's own command line, as Windows would split it
    files = render(spec)
    config = tmp_path / Layout(spec).config_file
    config.write_bytes(files[Layout(spec).config_file])
    root_dir = tmp_path / "Notebooks"
    root_dir.mkdir()
    port = spec.port if spec.port >= 1024 else free_port(spec.ip)  # a spec made for a free port keeps it
    mapped = {
        argv[0]: sys.executable,  # python.exe -> this environment's python, which has notebook
        f"--ServerApp.port={spec.port}": f"--ServerApp.port={port}",  # a free port
        f"--ServerApp.root_dir={site.notebook_dir}": f"--ServerApp.root_dir={root_dir}",
        f"--config={site.config}": f"--config={config}",
    }
    mapped = {windows: linux for windows, linux in mapped.items() if windows != linux}
    linux_argv = [mapped.get(arg, arg) for arg in argv]
    assert sum(a != b for a, b in zip(argv, linux_argv, strict=True)) == len(mapped)
    if os.geteuid() == 0:
        linux_argv.append("--allow-root")  # Jupyter refuses root on Linux; Windows has no such check
    for sub in ("local", "roaming", "jupyter-runtime", "jupyter-config", "jupyter-data"):
        (tmp_path / sub).mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LOCALAPPDATA": str(tmp_path / "local"),
        "APPDATA": str(tmp_path / "roaming"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    return Replay(linux_argv, env, tmp_path, spec.ip, port, root_dir, spec)


@pytest.fixture
def notebook_available():
    import importlib.util

    need(importlib.util.find_spec("notebook"), "the notebook package (pip install notebook)")


@pytest.mark.wine
def test_the_owner_gets_in_and_nobody_else(wine, tmp_path, notebook_available):
    spec = build_spec(ip="127.0.0.13", name="py")
    replay = replay_of(wine, tmp_path, spec)
    notebook = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    (replay.root_dir / "secret-notes.ipynb").write_text(notebook)
    replay.legacy_shortcut.parent.mkdir(parents=True)
    replay.legacy_shortcut.write_bytes(b"[InternetShortcut]\r\nURL=http://py/?token=" + b"a" * 43 + b"\r\n")
    try:
        server = replay.start()
        replay.wait_ready(server)

        # The secret of this run: only for the user, never on the command line or in the log.
        token_file = replay.state / "token"
        token = token_file.read_text().strip()
        assert len(token) >= 43
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token not in " ".join(replay.argv)
        assert token.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert token not in (replay.state / "server.log").read_text()
        assert "http://py/?token=..." in (replay.state / "server.log").read_text()  # the friendly URL, masked
        # 0.1.0's per-user entry with a lasting secret is gone; nothing in the roaming profile holds one.
        assert not replay.legacy_shortcut.exists()
        roaming = [p for p in (tmp_path / "roaming").rglob("*") if p.is_file()]
        assert not any(token.encode() in p.read_bytes() for p in roaming), roaming
        # Jupyter's runtime files (they hold the token) are in the local profile.
        assert list((replay.state / "runtime").glob("jpserver-*.json"))
        assert not list((tmp_path / "jupyter-runtime").glob("jpserver-*"))

        # Someone without the secret: the login page, and none of the user's files.
        stranger = {}
        tree = request(replay, "GET", "/tree", host="py", cookies=stranger)
        assert tree.status == 302 and tree.headers["Location"].startswith("/login")
        login = request(replay, "GET", "/login", host="py", cookies=stranger)
        assert login.status == 200 and "secret-notes" not in login.body
        contents = request(replay, "GET", "/api/contents", host="py", cookies=stranger)
        assert contents.status == 403 and "secret-notes" not in contents.body
        wrong = request(replay, "GET", "/tree?token=" + "x" * 43, host="py", cookies=stranger)
        assert wrong.status in (302, 403) and "secret-notes" not in wrong.body

        # The owner: one click on the shortcut's URL, then a cookie.
        owner = {}
        first = browse(replay, "/?token=" + token, host="py", cookies=owner)
        assert first.status == 200, first.status
        page = request(replay, "GET", "/tree", host="py", cookies=owner)
        assert page.status == 200 and "jupyter-config-data" in page.body
        listing = request(replay, "GET", "/api/contents", host="py", cookies=owner)
        assert listing.status == 200 and "secret-notes.ipynb" in listing.body
        # The same server answers by name with a port, and by its IP (Jupyter keys its
        # cookie by Host, so these carry the secret as a header, as a second browser tab would a new login).
        for host in (f"py:{replay.port}", replay.ip, f"{replay.ip}:{replay.port}"):
            other = request(replay, "GET", "/api/contents", host=host, headers={"Authorization": f"token {token}"})
            assert other.status == 200, host

        # DNS rebinding protection stays on: any other Host name is refused, even with the secret.
        for host in ("evil.example", f"evil.example:{replay.port}", "py.evil.example"):
            refused = request(replay, "GET", "/api/contents", host=host, headers={"Authorization": f"token {token}"})
            assert refused.status == 403, host
            assert "secret-notes" not in refused.body

        # A second server on the same port exits non-zero instead of moving to another port.
        second = replay.start("second.log")
        assert second.wait(timeout=60) != 0
        assert "is not available" in (replay.state / "second.log").read_text()

        # No lasting password can be set from the token: Jupyter's form is off.
        assert "new_password" not in request(replay, "GET", "/login", host="py").body

        # A restart makes a new secret and a new cookie secret: what was valid before opens nothing.
        server.terminate()
        server.wait(timeout=20)
        restarted = replay.start()
        replay.wait_ready(restarted)
        new_token = (replay.state / "token").read_text().strip()
        assert new_token != token
        stale = request(replay, "GET", "/api/contents", host="py", cookies=dict(owner))
        assert stale.status == 403 and "secret-notes" not in stale.body
        old_header = {"Authorization": f"token {token}"}
        assert request(replay, "GET", "/api/contents", host="py", headers=old_header).status == 403
        fresh = {}
        assert browse(replay, "/?token=" + new_token, host="py", cookies=fresh).status == 200
        assert request(replay, "GET", "/api/contents", host="py", cookies=fresh).status == 200
    finally:
        replay.stop_all()


@pytest.mark.wine
def test_auth_none_serves_everyone(wine, tmp_path, notebook_available):
    spec = build_spec(ip="127.0.0.13", name="py", auth="none")
    replay = replay_of(wine, tmp_path, spec)
    try:
        server = replay.start()
        replay.wait_ready(server)
        assert request(replay, "GET", "/api/contents", host="py").status == 200
        assert not (replay.state / "token").exists()
        assert "sign-in is OFF" in (replay.state / "server.log").read_text()
    finally:
        replay.stop_all()


@pytest.mark.wine
def test_the_server_output_stays_under_its_cap_while_it_runs(wine, tmp_path, notebook_available):
    """Within one run, server.log never passes the cap; the older part moves to server.1.log."""
    from generator.layout import SERVER_LOG_BYTES

    spec = build_spec(ip="127.0.0.13", name="py")
    replay = replay_of(wine, tmp_path, spec)
    config = Path(next(arg for arg in replay.argv if arg.startswith("--config=")).split("=", 1)[1])
    cap = 20_000
    text = config.read_text()
    assert text.count(f"SERVER_LOG_BYTES = {SERVER_LOG_BYTES}\n") == 1
    config.write_text(text.replace(f"SERVER_LOG_BYTES = {SERVER_LOG_BYTES}\n", f"SERVER_LOG_BYTES = {cap}\n"))
    log, older = replay.state / "server.log", replay.state / "server.1.log"
    try:
        server = replay.start()
        replay.wait_ready(server)
        sizes = []
        for i in range(600):  # each 404 is logged as a warning of about 100 bytes
            assert request(replay, "GET", f"/no-such-page-{i}", host="py").status == 404
            sizes.append(log.stat().st_size)
        time.sleep(1)
        assert server.poll() is None
        assert request(replay, "GET", "/api", host="py").status == 200
        assert max(sizes) <= cap
        assert 0 < older.stat().st_size <= cap
        assert "/no-such-page-599" in log.read_text() + older.read_text()
        print(f"\nserver.log sizes with a {cap}-byte cap: max {max(sizes)}, server.1.log {older.stat().st_size}")
    finally:
        replay.stop_all()


SUPERVISOR = r"""
import ctypes, json, os, subprocess, sys, time, urllib.request
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us
argv, env, probe = json.loads(sys.argv[1])
spawn = "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); print(p.pid, flush=True); p.wait()"
launcher = subprocess.Popen([sys.executable, "-c", spawn, *argv], env=env, stdout=subprocess.PIPE)
server = int(launcher.stdout.readline())
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(probe, timeout=2)
        break
    except OSError:
        time.sleep(0.1)
launcher.kill()
launcher.wait()
start = time.monotonic()
_, status = os.waitpid(server, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "seconds": time.monotonic() - start}))
"""


@pytest.mark.wine
def test_the_server_ends_when_its_launcher_is_gone(wine, tmp_path, notebook_available):
    need(sys.platform == "linux", "Linux (PR_SET_CHILD_SUBREAPER)")
    spec = build_spec(ip="127.0.0.13", name="py")
    replay = replay_of(wine, tmp_path, spec)
    probe = f"http://{replay.ip}:{replay.port}/api"
    proc = subprocess.run(
        [sys.executable, "-c", SUPERVISOR, json.dumps([replay.argv, replay.env, probe])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["exit"] == LAUNCHER_GONE_EXIT
    assert outcome["seconds"] < 5
    print(f"\nserver ended {outcome['seconds']:.2f} s after its launcher, exit code {outcome['exit']}")
