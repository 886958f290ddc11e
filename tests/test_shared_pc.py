"""Shared PCs: another local account holds the bundle's address, and the Start-menu entry.

The threat: an unprivileged account on the same PC that can listen on any free
loopback address and run any server there, but cannot read the victim's
profile. The broker holds the address from boot (tests/test_broker.py: a squatter
cannot take it from the broker); the Start-menu entry's guard opens the address
only when the broker is what answers there. Here the victim is the test's own
account and the squatter a second, real account, so every owner check below is
the operating system's answer, through the guard's POSIX branch (/proc/net/tcp's
uid against the broker channel's SO_PEERCRED) - the same decision as its Windows
branch (GetExtendedTcpTable's process against the broker pipe's server process),
which cannot run here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generator.layout import Layout
from generator.render import render
from generator.spec import build_spec

from conftest import need
from test_server import free_port, replay_of

SQUATTER_ACCOUNT = "gb-squatter"

# A server of the other account: records every request it gets (one JSON line each on
# stdout) and answers with a page, or with an NTLM challenge.
SQUATTER = r"""
import http.server, json, sys
ip, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print(json.dumps({"path": self.path, "headers": dict(self.headers)}), flush=True)
        if mode == "ntlm":
            self.send_response(401)
            self.send_header("WWW-Authenticate", "NTLM")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b"<html><form>Password or token: <input name=password></form></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    def log_message(self, *args):
        pass
class Dual(http.server.HTTPServer):
    address_family = __import__("socket").AF_INET6
    def server_bind(self):
        self.socket.setsockopt(__import__("socket").IPPROTO_IPV6, __import__("socket").IPV6_V6ONLY, 0)
        super().server_bind()
server = Dual(("::", port), Handler) if mode == "dual-stack" else http.server.HTTPServer((ip, port), Handler)
print("ready", flush=True)
server.serve_forever()
"""

# Stands in for the user's browser: records the URL it was asked to open.
RECORDER = r"""
import sys
with open(sys.argv[1], "a") as out:
    out.write(sys.argv[2] + "\n")
"""


@pytest.fixture(scope="module")
def squatter_account():
    """The second account, made for these tests and removed after them (one that was there stays)."""
    from support.broker import ensure_account, remove_account

    need(sys.platform == "linux" and os.geteuid() == 0, "root on Linux, to create a second account")
    name, made = ensure_account(SQUATTER_ACCOUNT)
    yield name
    if made:
        remove_account(name)


class Squatter:
    def __init__(self, account: str, ip: str, port: int, mode: str) -> None:
        # The system's python: the other account cannot enter this user's home or venv.
        python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
        need(python, "a system python3 for the second account")
        self.proc = subprocess.Popen(
            [python, "-I", "-c", SQUATTER, ip, str(port), mode],
            user=account,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready", self.proc.stderr.read()
        self.requests: list[dict] = []

    def stop(self) -> list[dict]:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        self.requests = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return self.requests


class Guard:
    """The bundle's guard script, run as the Start-menu entry runs it, its broker channel the test's."""

    def __init__(self, tmp_path: Path, spec, channel: str) -> None:
        layout = Layout(spec)
        self.path = tmp_path / layout.guard_file
        text = render(spec)[layout.guard_file].decode("utf-8")
        line = f"BROKER_CHANNEL = {layout.broker_channel!r}"
        assert text.count(line) == 1
        self.path.write_text(text.replace(line, f"BROKER_CHANNEL = {channel!r}"), newline="")
        self.opened = tmp_path / "browser-opened.txt"
        recorder = tmp_path / "recorder.py"
        recorder.write_text(RECORDER)
        self.env = {
            "PATH": os.environ["PATH"],
            "LOCALAPPDATA": str(tmp_path / "local"),
            "BROWSER": f"{sys.executable} {recorder} {self.opened} %s",
        }

    def run(self, mode: str = "open", browser: str | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env, **({"BROWSER": browser} if browser else {}))
        return subprocess.run(
            [sys.executable, "-I", str(self.path), mode], env=env, capture_output=True, text=True, timeout=120
        )

    def urls(self) -> list[str]:
        return self.opened.read_text().splitlines() if self.opened.exists() else []


def spec_on_free_port():
    return build_spec(ip="127.0.0.13", name="py", port=free_port("127.0.0.13"))


@pytest.mark.parametrize("mode", ["page", "ntlm", "dual-stack"])
def test_the_entry_opens_nothing_that_is_not_the_broker(tmp_path, squatter_account, mode):
    """The other account holds the address (the broker is not running, or runs elsewhere): the entry
    names the squatter, opens no browser, and sends the squatter nothing."""
    from support.broker import Broker, shared_folder

    spec = spec_on_free_port()
    base = shared_folder()
    broker = None
    try:
        guard = Guard(tmp_path, spec, str(base / "broker" / "broker.sock"))
        assert "Nothing answers at" in guard.run().stderr  # no listener at all
        squatter = Squatter(squatter_account, spec.ip, spec.port, mode)
        try:
            refused = guard.run()  # no broker channel either: cannot be the broker
            assert refused.returncode == 1
            assert f"answered by process {squatter.proc.pid} of another account ({squatter_account})" in refused.stderr
            # The broker runs (its channel answers), but on another port: the squatter is still not it.
            broker = Broker(base, spec.ip, free_port(spec.ip), name=spec.name)
            refused = guard.run()
            assert refused.returncode == 1, refused.stderr
            assert "which is not the broker" in refused.stderr
            assert guard.urls() == []
        finally:
            assert squatter.stop() == []  # the guard sent it nothing
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_the_entry_opens_the_users_own_server_through_the_broker_in_a_browser(tmp_path):
    """The whole Start-menu path: the guard finds the broker on the address and opens the bundle's URL,
    with no secret in it; headless Chromium lands on this account's own notebook server."""
    from support.broker import Broker, shared_folder

    spec = spec_on_free_port()
    base = shared_folder()
    program = base / Layout(spec).broker_file
    program.write_bytes(render(spec)[Layout(spec).broker_file])
    broker = Broker(base, spec.ip, spec.port, name=spec.name, program=program)
    replay = replay_of(tmp_path, spec, channel=broker.channel)
    guard = Guard(tmp_path, spec, broker.channel)
    try:
        server = replay.start()
        replay.wait_ready(server)
        broker.wait_for(lambda: 200 in [e["event"] for e in broker.events()], "the server to register")
        assert guard.run().returncode == 0
        assert guard.urls() == [Layout(spec).url]  # http://py:PORT/, no token
        dom = open_with_chromium(guard, tmp_path, spec)
        assert "jupyter-config-data" in dom and "password_input" not in dom, dom[:2000]
    finally:
        replay.stop_all()
        broker.stop()
        shutil.rmtree(base, ignore_errors=True)


def open_with_chromium(guard: Guard, tmp_path: Path, spec) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    need(chromium, "Chromium (Debian: apt-get install chromium)")
    dom = tmp_path / "dom.html"
    script = tmp_path / "chromium.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"exec '{chromium}' --headless=new --no-sandbox --disable-gpu --no-first-run "
        f"--user-data-dir='{tmp_path / 'chromium-profile'}' "
        f"--host-resolver-rules='MAP {spec.name} {spec.ip}' --virtual-time-budget=5000 "
        f"--dump-dom \"$1\" > '{dom}' 2>/dev/null\n"
    )
    script.chmod(0o755)
    started = time.monotonic()
    result = guard.run(browser=f"{script} %s")
    assert result.returncode == 0, result.stderr
    print(f"\nChromium opened the server through the Start-menu path in {time.monotonic() - started:.1f} s")
    return dom.read_text()


def test_the_guard_is_python_that_both_branches_can_run(tmp_path):
    """Both branches compile (the Windows one is read, not run, here), and a wrong argument
    (0.2's "check" too) is refused with exit code 2."""
    import ast

    spec = build_spec(ip="127.0.0.13", name="py")
    source = render(spec)[Layout(spec).guard_file]
    tree = ast.parse(source.decode("utf-8"))
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert {"holder_windows", "holder_posix", "is_broker", "broker_process_windows", "open_url"} <= functions
    path = tmp_path / Layout(spec).guard_file
    path.write_bytes(source)
    for wrong in ("steal", "check"):
        answer = subprocess.run([sys.executable, "-I", str(path), wrong], capture_output=True, text=True)
        assert answer.returncode == 2 and "usage" in answer.stderr
