"""End to end: the command line the launcher's script builds (recorded by running it on Linux,
test_launcher.py), replayed with the real notebook server, probed over real HTTP; and the
launcher's script running the real server itself."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from generator.constants import LAUNCHER_GONE_EXIT
from generator.layout import Layout
from generator.render import render
from generator.spec import build_spec

from conftest import need
from test_launcher import GONE, STOPPED, Site


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

    def registration(self) -> dict:
        """This run's {port, secret}, as the server wrote it for the broker."""
        return json.loads((self.state / "registration.json").read_text())

    def wait_ready(self, proc, timeout: float = 60) -> None:
        """Until the server answers on the port its registration file names (a new file each start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, (self.state / "server.log").read_text()
            try:
                self.port = self.registration()["port"]
                if request(self, "GET", "/api", host="127.0.0.1").status == 200:
                    return
            except (OSError, ValueError, KeyError):
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


def replay_of(tmp_path: Path, spec, channel: str | None = None) -> Replay:
    """Run the bundle's launcher script with a stand-in server that records how it was started,
    then replay that command line with the real server. Its settings, beside the script, register
    with the broker at ``channel`` (a Unix socket here; none: nothing there)."""
    site = Site(tmp_path, spec)
    code, output = site.run(GONE)
    assert code == 0, output + site.log()
    (start,) = site.starts()
    argv = start["argv"]
    assert argv == site.argv()  # the launcher's own command line for the server
    layout = Layout(spec)
    config = site.install / layout.config_file
    text = config.read_text(encoding="utf-8")
    line = f"BROKER_CHANNEL = {layout.broker_channel!r}"
    assert text.count(line) == 1
    config.write_text(text.replace(line, f"BROKER_CHANNEL = {channel or str(tmp_path / 'no-broker')!r}"), newline="")
    shutil.rmtree(site.state)  # the user's state as the launcher left it: from here on, the server's
    return Replay(argv + allow_root(), server_env(tmp_path), tmp_path, "127.0.0.1", 0, site.profile / "Notebooks", spec)


def allow_root() -> list[str]:
    """Jupyter refuses root on Linux; Windows has no such check."""
    return ["--allow-root"] if os.geteuid() == 0 else []


def server_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment for the server: its profile folders in ``tmp_path``, Jupyter's own
    folders there too."""
    for sub in ("local", "roaming", "jupyter-runtime", "jupyter-config", "jupyter-data"):
        (tmp_path / sub).mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "USERPROFILE": str(tmp_path / "profile"),
        "LOCALAPPDATA": str(tmp_path / "local"),
        "APPDATA": str(tmp_path / "roaming"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }


@pytest.fixture
def notebook_available():
    import importlib.util

    need(importlib.util.find_spec("notebook"), "the notebook package (pip install notebook)")


def via_broker(broker, method: str, path: str, *, host: str | None = None, headers=None) -> Answer:
    """A request to the bundle's address, as the browser of this test's own account sends it."""
    conn = http.client.HTTPConnection(broker.ip, broker.port, timeout=10)
    conn.request(method, path, headers={"Host": host or broker.host, **(headers or {})})
    answer = conn.getresponse()
    body = answer.read().decode("utf-8", "replace")
    conn.close()
    return Answer(answer.status, answer.headers, body)


def test_the_owner_gets_in_through_the_broker_and_nobody_else(tmp_path, notebook_available):
    """The launcher's command line, the bundle's server settings and the bundle's own broker file: the
    server registers, the account's browser reaches it at the bundle's address with no token, and
    nothing reaches it directly without this run's secret."""
    from support.broker import Broker, free_port

    spec = build_spec(ip="127.0.0.13", name="py")
    layout = Layout(spec)
    program = tmp_path / layout.broker_file
    program.write_bytes(render(spec)[layout.broker_file])
    broker = Broker(tmp_path, spec.ip, free_port(spec.ip), name=spec.name, program=program)
    replay = replay_of(tmp_path, spec, channel=broker.channel)
    notebook = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    (replay.root_dir / "secret-notes.ipynb").write_text(notebook)
    replay.legacy_shortcut.parent.mkdir(parents=True)
    replay.legacy_shortcut.write_bytes(b"[InternetShortcut]\r\nURL=http://py/?token=" + b"a" * 43 + b"\r\n")
    replay.state.mkdir(parents=True)
    for old in ("token", "server.pid"):  # gen-bundle 0.2's files
        (replay.state / old).write_text("left from 0.2\n")
    try:
        server = replay.start()
        replay.wait_ready(server)
        broker.wait_for(lambda: [e["event"] for e in broker.events()].count(200) == 1, "the server to register")

        # The account's browser: the bundle's address, no token, no login page.
        listing = via_broker(broker, "GET", "/api/contents")
        assert listing.status == 200 and "secret-notes.ipynb" in listing.body
        page = via_broker(broker, "GET", "/tree")
        assert page.status == 200 and "jupyter-config-data" in page.body
        assert "token" not in page.headers.get("Location", "")
        # Another name for the address (DNS rebinding) is the broker's refusal, not the server's page.
        assert via_broker(broker, "GET", "/api/contents", host="evil.example").status == 400

        # This run's secret: in a file only this account (and, on Windows, the broker) can read, never on
        # a command line or in a log.
        registration = replay.state / "registration.json"
        secret = replay.registration()["secret"]
        assert len(secret) >= 43
        assert stat.S_IMODE(registration.stat().st_mode) == 0o600
        assert secret not in " ".join(replay.argv)
        assert secret.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert secret not in (replay.state / "server.log").read_text()
        assert secret not in broker.log.read_text()
        # 0.1.0's per-user entry and 0.2's token and pid files are gone; nothing roaming holds a secret.
        assert not replay.legacy_shortcut.exists()
        assert not (replay.state / "token").exists() and not (replay.state / "server.pid").exists()
        roaming = [p for p in (tmp_path / "roaming").rglob("*") if p.is_file()]
        assert not any(secret.encode() in p.read_bytes() for p in roaming), roaming
        # Jupyter's runtime files are in the local profile.
        assert list((replay.state / "runtime").glob("jpserver-*.json"))
        assert not list((tmp_path / "jupyter-runtime").glob("jpserver-*"))

        # Straight to the server's port: nothing without the secret, no login page to try one in.
        stranger = request(replay, "GET", "/api/contents", host="127.0.0.1")
        assert stranger.status == 403 and "secret-notes" not in stranger.body
        assert request(replay, "GET", "/login", host="127.0.0.1").status in (404, 302, 403)
        wrong = {"Authorization": "token " + "x" * 43}
        assert request(replay, "GET", "/api/contents", host="127.0.0.1", headers=wrong).status == 403
        forged = {"X-Gen-Bundle-Broker": "x" * 43}
        assert request(replay, "GET", "/api/contents", host="127.0.0.1", headers=forged).status == 403
        # A program of the same account, with the secret from the file: Jupyter's own API.
        own = {"Authorization": f"token {secret}"}
        assert request(replay, "GET", "/api/contents", host="127.0.0.1", headers=own).status == 200
        assert request(replay, "GET", "/api/contents", host="evil.example", headers=own).status == 403

        # A restart: a new port and secret, registered again; the old secret opens nothing.
        server.terminate()
        try:
            server.wait(timeout=60)  # Jupyter's own shutdown; seen taking over 20 s on a loaded CI machine
        except subprocess.TimeoutExpired:
            server.kill()  # what this test checks is the next start, not this one's end
            server.wait()
        restarted = replay.start()
        replay.wait_ready(restarted)
        assert replay.registration()["secret"] != secret
        assert request(replay, "GET", "/api/contents", host="127.0.0.1", headers=own).status == 403
        broker.wait_for(lambda: [e["event"] for e in broker.events()].count(200) == 2, "the server to register again")
        assert via_broker(broker, "GET", "/api/contents").status == 200
    finally:
        replay.stop_all()
        broker.stop()


def test_auth_none_serves_everyone(tmp_path, notebook_available):
    spec = build_spec(ip="127.0.0.13", name="py", auth="none")
    replay = replay_of(tmp_path, spec)
    try:
        server = replay.start()
        replay.wait_ready(server)
        assert request(replay, "GET", "/api/contents", host="127.0.0.1").status == 200
        assert "sign-in is OFF" in (replay.state / "server.log").read_text()
    finally:
        replay.stop_all()


def test_the_server_output_stays_under_its_cap_while_it_runs(tmp_path, notebook_available):
    """Within one run, server.log never passes the cap; the older part moves to server.1.log."""
    from generator.constants import SERVER_LOG_BYTES

    spec = build_spec(ip="127.0.0.13", name="py")
    replay = replay_of(tmp_path, spec)
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
            assert request(replay, "GET", f"/no-such-page-{i}", host="127.0.0.1").status == 404
            sizes.append(log.stat().st_size)
        time.sleep(1)
        assert server.poll() is None
        assert request(replay, "GET", "/api", host="127.0.0.1").status == 200
        assert max(sizes) <= cap
        assert 0 < older.stat().st_size <= cap
        assert "/no-such-page-599" in log.read_text() + older.read_text()
        print(f"\nserver.log sizes with a {cap}-byte cap: max {max(sizes)}, server.1.log {older.stat().st_size}")
    finally:
        replay.stop_all()


SUPERVISOR = r"""
import ctypes, json, os, subprocess, sys, time, urllib.request
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us
argv, env, cwd, registration = json.loads(sys.argv[1])
spawn = "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); print(p.pid, flush=True); p.wait()"
task = subprocess.Popen([sys.executable, "-c", spawn, *argv], env=env, cwd=cwd, stdout=subprocess.PIPE)
launcher = int(task.stdout.readline())
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:  # the server answers on the port its registration file names
        port = json.load(open(registration))["port"]
        urllib.request.urlopen("http://127.0.0.1:%d/api" % port, timeout=2)
        break
    except (OSError, ValueError, KeyError):
        time.sleep(0.1)
else:
    print("Timeout: the server did not answer", flush=True)
task.kill()  # as Task Scheduler ends a stopped task's own process
task.wait()
start = time.monotonic()
ended = {}
while len(ended) < 2 and time.monotonic() - start < 30:
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:  # none yet: the launcher becomes this process's child when the task's has gone
        pid = 0
    if pid:
        ended["launcher" if pid == launcher else "server"] = [os.waitstatus_to_exitcode(status), time.monotonic() - start]
    else:
        time.sleep(0.05)
print(json.dumps(ended))
"""


def test_the_launcher_and_its_server_end_when_the_tasks_process_is_ended(tmp_path, notebook_available):
    """The launcher's script runs the real server; the process that started the script (the task's
    own, here a stand-in) is killed: the launcher sees it go and ends with 0, and the server sees
    the launcher go and ends with LAUNCHER_GONE_EXIT, each within seconds."""
    need(sys.platform == "linux", "Linux (PR_SET_CHILD_SUBREAPER)")
    spec = build_spec(ip="127.0.0.13", name="py")
    replay = replay_of(tmp_path, spec)
    env = replay.env
    if os.geteuid() == 0:  # Jupyter refuses root on Linux: this test's own setting (with --config, Jupyter
        # reads only jupyter_config.* from its config folders), not the bundle's
        (tmp_path / "jupyter-config" / "jupyter_config.json").write_text('{"ServerApp": {"allow_root": true}}')
    launcher = tmp_path / "install" / Layout(spec).launcher_script_file
    registration = str(replay.state / "registration.json")
    argv = [sys.executable, "-I", str(launcher)]
    proc = subprocess.run(
        [sys.executable, "-c", SUPERVISOR, json.dumps([argv, env, str(launcher.parent), registration])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Timeout" not in proc.stdout, (replay.state / "server.log").read_text()
    ended = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ended["launcher"][0] == 0, ended
    assert ended["server"][0] == LAUNCHER_GONE_EXIT, ended
    assert max(ended["launcher"][1], ended["server"][1]) < 5, ended
    log = (replay.state / "launcher.log").read_text(encoding="utf-8")
    assert log.splitlines()[-1].endswith(" " + STOPPED), log
    assert "gen-bundle: the launcher is gone; stopping the server" in (replay.state / "server.log").read_text()
    print(
        f"\nafter the task's process: the launcher ended in {ended['launcher'][1]:.2f} s, "
        f"the server in {ended['server'][1]:.2f} s (exit {ended['server'][0]})"
    )
