"""Shared PCs: another local account holds the server's address.

The threat: an unprivileged account on the same PC that can listen on any free
loopback address and run any server there, but cannot read the victim's
profile. Here the victim is the test's own account and the squatter a second,
real account (created for the test), so every owner check below is the
operating system's answer, through the guard script's POSIX branch
(/proc/net/tcp and uids) - the same logic as its Windows branch
(GetExtendedTcpTable and the process token), which cannot run here.
"""

from __future__ import annotations

import json
import os
import pwd
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
from test_server import browse, free_port, replay_of, request

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
def squatter_account() -> str:
    need(sys.platform == "linux" and os.geteuid() == 0, "root on Linux, to create a second account")
    try:
        pwd.getpwnam(SQUATTER_ACCOUNT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SQUATTER_ACCOUNT], check=True
        )
    return SQUATTER_ACCOUNT


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
    """The bundle's guard script, run as the launcher and the Start-menu entry run it."""

    def __init__(self, tmp_path: Path, spec, local: Path) -> None:
        self.path = tmp_path / Layout(spec).guard_file
        self.path.write_bytes(render(spec)[Layout(spec).guard_file])
        self.opened = tmp_path / "browser-opened.txt"
        recorder = tmp_path / "recorder.py"
        recorder.write_text(RECORDER)
        self.env = {
            "PATH": os.environ["PATH"],
            "LOCALAPPDATA": str(local),
            "BROWSER": f"{sys.executable} {recorder} {self.opened} %s",
        }

    def run(self, mode: str, browser: str | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env, **({"BROWSER": browser} if browser else {}))
        return subprocess.run(
            [sys.executable, "-I", str(self.path), mode], env=env, capture_output=True, text=True, timeout=120
        )

    def urls(self) -> list[str]:
        return self.opened.read_text().splitlines() if self.opened.exists() else []


def spec_on_free_port():
    return build_spec(ip="127.0.0.13", name="py", port=free_port("127.0.0.13"))


@pytest.mark.wine
@pytest.mark.parametrize("mode", ["page", "ntlm"])
def test_a_squatter_gets_nothing_that_opens_the_victims_server(wine, tmp_path, squatter_account, mode):
    spec = spec_on_free_port()
    replay = replay_of(wine, tmp_path, spec)
    guard = Guard(tmp_path, spec, tmp_path / "local")
    host = f"py:{spec.port}"
    try:
        # Run 1: the owner signs in with one click.
        first = replay.start()
        replay.wait_ready(first)
        assert guard.run("open").returncode == 0
        (link,) = guard.urls()
        owner: dict = {}
        assert browse(replay, link.split(host, 1)[1], host=host, cookies=owner).status == 200
        assert request(replay, "GET", "/api/contents", host=host, cookies=owner).status == 200
        first.terminate()
        first.wait(timeout=20)

        # The other account takes the address while the victim's server is down.
        squatter = Squatter(squatter_account, spec.ip, spec.port, mode)
        try:
            check = guard.run("check")
            assert check.returncode == 1
            assert f"is in use by process {squatter.proc.pid} of another account ({squatter_account})" in check.stdout
            assert "no server is started" in check.stdout

            refused = guard.run("open")
            assert refused.returncode == 1
            assert f"answered by process {squatter.proc.pid} of another account ({squatter_account})" in refused.stderr
            assert guard.urls() == [link]  # no browser was opened this time

            # What a browser tab left open on the old run would still send to the address.
            import http.client

            owner_cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in owner.items())}
            for path, headers in (("/tree", owner_cookie), (link.split(host, 1)[1], {})):
                conn = http.client.HTTPConnection(spec.ip, spec.port, timeout=10)
                conn.request("GET", path, headers={"Host": host, **headers})
                conn.getresponse().read()
                conn.close()
        finally:
            seen = squatter.stop()
        assert len(seen) == 2, seen  # the two requests above; the guard sent none

        # Run 2 starts once the address is free: nothing the squatter saw opens it.
        second = replay.start()
        replay.wait_ready(second)
        for request_seen in seen:
            # Followed as a browser would, with the cookies the squatter saw.
            cookie = request_seen["headers"].get("Cookie", "")
            jar = dict(part.strip().split("=", 1) for part in cookie.split(";") if "=" in part)
            landed = browse(replay, request_seen["path"], host=host, cookies=jar)
            assert "jupyter-config-data" not in landed.body
            assert request(replay, "GET", "/api/contents", host=host, cookies=jar).status == 403
        stale_token = link.split("token=", 1)[1]
        assert (
            request(replay, "GET", "/api/contents", host=host, headers={"Authorization": f"token {stale_token}"}).status
            == 403
        )

        # The owner's one click works again, in a real browser.
        if mode == "page":
            dom = sign_in_with_chromium(guard, tmp_path, spec)
            assert "jupyter-config-data" in dom and "password_input" not in dom, dom[:2000]
    finally:
        replay.stop_all()


def sign_in_with_chromium(guard: Guard, tmp_path: Path, spec) -> str:
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
    result = guard.run("open", browser=f"{script} %s")
    assert result.returncode == 0, result.stderr
    print(f"\nChromium signed in through the Start-menu path in {time.monotonic() - started:.1f} s")
    return dom.read_text()


@pytest.mark.wine
def test_the_guard_knows_the_owners_own_server(wine, tmp_path):
    """This account's server: check says so (and starts nothing); open hands over this run's secret."""
    spec = spec_on_free_port()
    replay = replay_of(wine, tmp_path, spec)
    guard = Guard(tmp_path, spec, tmp_path / "local")
    try:
        assert guard.run("check").returncode == 0  # nothing listens yet
        assert "is not running for you" in guard.run("open").stderr
        # Another program of this same account on the address: named, but no secret for it.
        (replay.state).mkdir(parents=True, exist_ok=True)
        (replay.state / "server.pid").write_text("999999")
        other = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", spec.ip, str(spec.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while guard.run("check").returncode == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            refused = guard.run("open")
            assert refused.returncode == 1
            assert f"process {other.pid} of this account" in refused.stderr
            assert "not your notebook server" in refused.stderr
            assert guard.urls() == []
        finally:
            other.terminate()
            other.wait(timeout=10)
        server = replay.start()
        replay.wait_ready(server)
        check = guard.run("check")
        assert check.returncode == 1
        assert f"is in use by process {server.pid} of this account" in check.stdout
        assert guard.run("open").returncode == 0
        token = (replay.state / "token").read_text().strip()
        assert guard.urls() == [f"{Layout(spec).url}?token={token}"]
    finally:
        replay.stop_all()


def test_the_guard_is_python_that_both_branches_can_run(tmp_path):
    """Both branches compile (the Windows one is read, not run, here), and a wrong
    argument is refused with exit code 2."""
    import ast

    spec = build_spec(ip="127.0.0.13", name="py")
    source = render(spec)[Layout(spec).guard_file]
    tree = ast.parse(source.decode("utf-8"))
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert {"holder_windows", "holder_posix", "check", "open_signed_in"} <= functions
    path = tmp_path / Layout(spec).guard_file
    path.write_bytes(source)
    wrong = subprocess.run([sys.executable, "-I", str(path), "steal"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "usage" in wrong.stderr


def test_a_dual_stack_squatter_on_ipv6_is_seen(tmp_path, squatter_account):
    """A listener on [::] (IPv6, taking IPv4 too) answers connections to the address as well."""
    spec = spec_on_free_port()
    guard = Guard(tmp_path, spec, tmp_path / "local")
    squatter = Squatter(squatter_account, spec.ip, spec.port, "dual-stack")
    try:
        check = guard.run("check")
        assert check.returncode == 1
        assert f"is in use by process {squatter.proc.pid} of another account ({squatter_account})" in check.stdout
        refused = guard.run("open")
        assert refused.returncode == 1 and "another account" in refused.stderr
        assert guard.urls() == []
    finally:
        assert squatter.stop() == []  # the guard sent it nothing
