"""What the broker refuses, for real on Linux: one broker on 127.0.0.13 (root, as the machine's
service), a notebook server of this test's own account (root) and one of a second real account
(gb-other) behind it, each registered by its own code (templates/python/registration.py).

Every request goes over real TCP (http.client or a raw socket); the account at the other end
of a connection is the one whose process opened it (the kernel's sock_diag), so requests
of gb-other (or of nobody) are sent by a process of that account.
"""

from __future__ import annotations

import base64
import http.client
import http.cookies
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import need
from support.broker import (
    BROKER,
    REGISTRATION_FILE,
    SYSTEM_PYTHON,
    Account,
    Broker,
    Server,
    ensure_account,
    free_port,
    remove_account,
    shared_folder,
)

OTHER_ACCOUNT = "gb-other"
IP = "127.0.0.13"
EVENT_REGISTERED, EVENT_REGISTRATION_REFUSED, EVENT_REGISTRATION_ENDED = 200, 201, 202

# A request of another account's process: argv host, port, method, path; stdin {"headers": ...}.
# Prints {"status", "body"} as JSON.
CLIENT = r"""
import http.client, json, sys
host, port, method, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
headers = json.loads(sys.stdin.read())["headers"]
connection = http.client.HTTPConnection(host, port, timeout=30)
connection.request(method, path, headers=headers)
answer = connection.getresponse()
print(json.dumps({"status": answer.status, "type": answer.getheader("Content-Type", ""),
                  "body": answer.read().decode("utf-8", "replace")}))
"""

# A registration sent on the broker's channel by another account's process: argv channel, file.
# Prints the broker's answer and this process's pid.
REGISTER = r"""
import json, os, socket, sys
channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
channel.settimeout(30)
channel.connect(sys.argv[1])
channel.sendall(json.dumps({"file": sys.argv[2]}).encode("ascii") + b"\n")
answer = b""
while not answer.endswith(b"\n"):
    more = channel.recv(4096)
    if not more:
        break
    answer += more
print(json.dumps({"pid": os.getpid(), "answer": answer.decode("ascii", "replace")}))
"""

# A listener of another account on 127.0.0.1:PORT that answers every connection with its own page
# and, when its standard input closes, prints how many connections it was sent.
SQUAT = r"""
import socket, sys, threading
listener = socket.socket()
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(16)
seen = []
def serve():
    while True:
        connection, _ = listener.accept()
        seen.append(1)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nsquatter")
        connection.close()
threading.Thread(target=serve, daemon=True).start()
print("listening", flush=True)
sys.stdin.read()
print("connections", len(seen), flush=True)
"""


class Setup:
    def __init__(self, base, broker, root, other):
        self.base, self.broker, self.root, self.other = base, broker, root, other

    def restart_root(self):
        """A new server for root (after a test stopped it), registered."""
        self.root.stop()
        before = self.root.registered_count()
        self.root = Server(self.root.account, self.broker)
        self.root.wait_registered(count=before + 1)


@pytest.fixture(scope="module")
def stack():
    need(sys.platform == "linux" and os.geteuid() == 0, "root on Linux, to run the broker and a second account")
    need(os.path.exists(SYSTEM_PYTHON), f"{SYSTEM_PYTHON}, for the other accounts' processes")
    name, made = ensure_account(OTHER_ACCOUNT)
    base = shared_folder()
    broker = servers = None
    try:
        broker = Broker(base, IP, free_port(IP))
        servers = [Server(Account(account, base), broker) for account in ("root", name)]
        for server in servers:
            server.wait_registered()
        state = Setup(base, broker, *servers)
        yield state
        servers = [state.root, state.other]
    finally:
        for server in servers or ():
            server.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(base, ignore_errors=True)
        if made:
            remove_account(name)


@pytest.fixture
def setup(stack):
    """The broker with both accounts' servers registered (root's started again if a test stopped it)."""
    if stack.root.proc.poll() is not None:
        stack.restart_root()
    return stack


@pytest.fixture
def root_free(stack):
    """The broker with root's server stopped and its registration ended: root's account may
    register a backend of its own. (The tests that need it come last, so root's server stops once.)"""
    if stack.root.proc.poll() is None:
        stop_root(stack)
    return stack


# ---- requests ----


def request(setup, method, path, headers=None, body=None, host=None, port=None):
    """A request of this test's own account (root) through the broker: (status, headers, body)."""
    connection = http.client.HTTPConnection(host or setup.broker.ip, port or setup.broker.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Host": setup.broker.host, **(headers or {})})
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


def request_as(account, host, port, method, path, headers):
    """A request sent by a process of ``account``: {"status", "type", "body"}."""
    done = account.run(
        [SYSTEM_PYTHON, "-c", CLIENT, host, str(port), method, path],
        input=json.dumps({"headers": headers}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def raw(setup, data, timeout=10, headers_only=False):
    """Bytes sent as they are on one connection to the broker; everything it answers until it closes
    (or, with ``headers_only``, until the end of the answer's headers)."""
    received = b""
    with socket.create_connection((setup.broker.ip, setup.broker.port), timeout=timeout) as connection:
        connection.sendall(data)
        try:
            while True:
                more = connection.recv(65536)
                if not more:
                    break
                received += more
                if headers_only and b"\r\n\r\n" in received:
                    break
        except TimeoutError:
            pass
    return received


def raw_status(received):
    line = received.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), received[:300]
    return int(line.split()[1])


def same_origin(setup, **more):
    return {"Origin": f"http://{setup.broker.host}", "Sec-Fetch-Site": "same-origin", **more}


def xsrf_cookie(setup):
    """Jupyter's _xsrf cookie, as a page of the server sets it."""
    status, headers, body = request(setup, "GET", "/tree")
    assert status == 200, body[:300]
    for header in headers.get_all("Set-Cookie") or ():
        cookie = http.cookies.SimpleCookie(header)
        if "_xsrf" in cookie:
            return cookie["_xsrf"].value
    raise AssertionError(f"no _xsrf cookie in {headers}")


def with_xsrf(setup, **more):
    xsrf = xsrf_cookie(setup)
    return same_origin(setup, **{"X-XSRFToken": xsrf, "Cookie": f"_xsrf={xsrf}", **more})


def start_kernel(setup):
    status, _, body = request(setup, "POST", "/api/kernels", headers=with_xsrf(setup), body=b"{}")
    assert status == 201, body[:300]
    return json.loads(body)["id"]


def stop_kernel(setup, kernel):
    status, _, body = request(setup, "DELETE", f"/api/kernels/{kernel}", headers=with_xsrf(setup))
    assert status == 204, body[:300]


def is_broker_page(headers, body, status_text):
    return headers.get("Content-Type", "").startswith("text/html") and status_text.encode() in body


def is_jupyter_xsrf_refusal(status, headers, body):
    """Jupyter's own 403 for a POST without _xsrf (JSON from its API handler), not the broker's page."""
    return status == 403 and headers.get("Content-Type", "").startswith("application/json") and b"_xsrf" in body


def contents(answer):
    return {item["name"] for item in json.loads(answer)["content"]}


def events_since(setup, count, event_id):
    return [event for event in setup.broker.events()[count:] if event["event"] == event_id]


def register(setup, path):
    """Root's own registration naming ``path``: (the open channel, the broker's answer)."""
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    channel.settimeout(30)
    channel.connect(setup.broker.channel)
    channel.sendall(json.dumps({"file": str(path)}).encode("ascii") + b"\n")
    answer = b""
    while not answer.endswith(b"\n"):
        more = channel.recv(4096)
        if not more:
            break
        answer += more
    return channel, json.loads(answer)


def register_as(setup, account, path):
    done = account.run(
        [SYSTEM_PYTHON, "-c", REGISTER, setup.broker.channel, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    return sent["pid"], json.loads(sent["answer"])


def refusal_of(setup, pid):
    """The reason of the broker's refusal of the registration sent by process ``pid``."""
    refused = [event for event in setup.broker.events() if event["event"] == EVENT_REGISTRATION_REFUSED]
    reasons = [event["reason"] for event in refused if event["pid"] == pid]
    assert len(reasons) == 1, refused
    return reasons[0]


def wait_ended(setup, port, count):
    """Until the broker logs the end of the registration for ``port`` (after event number ``count``)."""
    setup.broker.wait_for(
        lambda: any(event["port"] == port for event in events_since(setup, count, EVENT_REGISTRATION_ENDED)),
        f"the registration for port {port} to end",
        timeout=30,
    )


def stop_root(setup):
    port = setup.root.port
    count = len(setup.broker.events())
    setup.root.stop()
    wait_ended(setup, port, count)


# ---- 1. accounts ----


def test_each_account_reaches_only_its_own_server(setup):
    marker = {"root": "only-root.txt", OTHER_ACCOUNT: "only-gb-other.txt"}
    for server in (setup.root, setup.other):
        server.account.write(server.notebooks / marker[server.account.name], "mine\n")
    status, _, body = request(setup, "GET", "/api/contents")
    assert status == 200, body[:300]
    assert marker["root"] in contents(body) and marker[OTHER_ACCOUNT] not in contents(body)

    other = setup.other.account
    answer = request_as(other, setup.broker.ip, setup.broker.port, "GET", "/api/contents", {"Host": setup.broker.host})
    assert answer["status"] == 200, answer
    assert marker[OTHER_ACCOUNT] in contents(answer["body"]) and marker["root"] not in contents(answer["body"])

    # Straight to root's server, past the broker: no secret, no sign-in.
    straight = request_as(other, "127.0.0.1", setup.root.port, "GET", "/api/contents", {})
    assert straight["status"] == 403, straight
    # The same request with the broker's header and root's secret is signed in: the 403 was the secret's.
    signed = request_as(
        other, "127.0.0.1", setup.root.port, "GET", "/api/contents", {"X-Gen-Bundle-Broker": setup.root.secret}
    )
    assert signed["status"] == 200 and marker["root"] in contents(signed["body"]), signed


# ---- 2, 3. registrations ----


def test_another_accounts_registration_file_or_port_is_refused(setup):
    other = setup.other.account
    # Root's own registration file, named by gb-other.
    pid, answer = register_as(setup, other, setup.root.state / REGISTRATION_FILE)
    assert answer == {"registered": False}
    assert "owned by uid 0" in refusal_of(setup, pid)
    # A file of gb-other's own that names root's server's port.
    forged = other.home / "forged-registration.json"
    other.write(forged, json.dumps({"port": setup.root.port, "secret": "s" * 43}))
    pid, answer = register_as(setup, other, forged)
    assert answer == {"registered": False}
    assert "is not held by the registering account" in refusal_of(setup, pid)
    # Each account still reaches its own server.
    status, _, body = request(setup, "GET", "/api/contents")
    assert status == 200 and "only-gb-other.txt" not in contents(body)


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_a_registration_file_others_can_read_is_refused(setup, mode):
    path = setup.base / f"home-root/readable-{mode:o}.json"
    setup.root.account.write(path, json.dumps({"port": setup.root.port, "secret": setup.root.secret}), mode=mode)
    count = len(setup.broker.events())
    channel, answer = register(setup, path)
    channel.close()
    assert answer == {"registered": False}
    (refused,) = events_since(setup, count, EVENT_REGISTRATION_REFUSED)
    assert "readable or writable by other accounts" in refused["reason"]
    # The same file at 0600 passes every check of the file and the port: only root's running
    # server, already registered, stands in its way.
    os.chmod(path, 0o600)
    count = len(setup.broker.events())
    channel, answer = register(setup, path)
    channel.close()
    assert answer == {"registered": False}
    (refused,) = events_since(setup, count, EVENT_REGISTRATION_REFUSED)
    assert "already has a server registered" in refused["reason"]


# ---- 5, 6. no token-authenticated request through the broker ----


def test_a_token_parameter_never_reaches_the_server(setup):
    secret = setup.root.secret
    status, headers, body = request(
        setup, "POST", f"/api/kernels?token={secret}", headers=same_origin(setup), body=b"{}"
    )
    assert is_jupyter_xsrf_refusal(status, headers, body), (status, body[:300])
    # What the server received, as its trailing-slash redirect echoes it back.
    for query in (f"token={secret}&keep=1", f"keep=1&token={secret}", f"keep=1&tok%65n={secret}"):
        status, headers, body = request(setup, "GET", f"/gb-echo/?{query}")
        assert status in (301, 302), (status, body[:300])
        assert headers["Location"] == "/gb-echo?keep=1"
    status, headers, body = request(setup, "GET", f"/gb-echo/?token={secret}")
    assert status in (301, 302) and headers["Location"] == "/gb-echo"


def test_an_authorization_token_header_never_reaches_the_server(setup):
    """Through the broker the token signs nothing in (the server's XSRF check stays on); straight
    to the account's own port, the same header is the documented sign-in of the account's own
    programs, which skips XSRF as Jupyter's token does (the control: the server honours it).
    That the broker strips the header is test 15's, which sees what the server receives."""
    token = {"Authorization": f"token {setup.root.secret}"}
    status, headers, body = request(setup, "POST", "/api/kernels", headers=same_origin(setup, **token), body=b"{}")
    assert is_jupyter_xsrf_refusal(status, headers, body), (status, body[:300])
    status, _, body = request(setup, "GET", "/api/contents", headers=token)
    assert status == 200, body[:300]
    direct = http.client.HTTPConnection("127.0.0.1", setup.root.port, timeout=30)
    try:
        direct.request("POST", "/api/kernels", body=b"{}", headers=token)
        answer = direct.getresponse()
        body = answer.read()
    finally:
        direct.close()
    assert answer.status == 201, body[:300]
    stop_kernel(setup, json.loads(body)["id"])


def test_a_change_without_origin_or_from_another_site_is_refused(setup):
    """Jupyter's XSRF passes here (cookie and header): only the broker's own check refuses."""
    for change in ({"Origin": None}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        sent = {k: v for k, v in {**with_xsrf(setup), **change}.items() if v is not None}
        status, headers, body = request(setup, "POST", "/api/kernels", headers=sent, body=b"{}")
        if status == 201:
            stop_kernel(setup, json.loads(body)["id"])
        assert status == 403 and is_broker_page(headers, body, "may change anything here"), (change, status, body[:300])


def test_no_secret_is_logged(setup):
    log = setup.broker.log.read_text()
    assert any(event["event"] == EVENT_REGISTERED for event in setup.broker.events())
    for server in (setup.root, setup.other):
        assert server.secret not in log


def test_a_third_pending_registration_of_one_account_is_refused(setup):
    count, held = len(setup.broker.events()), []
    try:
        for _ in range(3):
            channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            channel.settimeout(5)
            channel.connect(setup.broker.channel)
            held.append(channel)
        assert held[2].recv(1) == b""  # closed at once; the first two wait for their line
        (refused,) = events_since(setup, count, EVENT_REGISTRATION_REFUSED)
        assert refused["account"] == 0 and refused["message"] == "too many registrations at once"
    finally:
        for channel in held:
            channel.close()


def test_refused_registrations_cannot_flood_the_log():
    """Any account may open the channel as often as it likes: one that leaves saying nothing (as the guard
    does, to ask who serves the channel) is not logged, and refusals are written at most
    QUIET_EVENTS_PER_MINUTE a minute, so that no flood pushes the broker's start and the servers'
    registrations (which install.ps1 reads) out of its 1 MiB log. (A broker of its own: the flood spends
    the minute's budget, which the other tests' refusals would miss.)"""
    need(sys.platform == "linux" and os.geteuid() == 0, "root on Linux, to run the broker")
    cap = broker_constant("QUIET_EVENTS_PER_MINUTE")
    base = shared_folder()
    broker = Broker(base, IP, free_port(IP))
    try:
        for _ in range(10):  # opened and closed, nothing sent (one at a time: two may be pending at once)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
                channel.connect(broker.channel)
            time.sleep(0.2)
        time.sleep(0.5)
        assert [event for event in broker.events() if event["event"] == EVENT_REGISTRATION_REFUSED] == []
        attempts = 2 * cap + 30  # more than two minutes' budget: the flood may cross into a next minute
        for _ in range(attempts):  # each a line that is no registration
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
                channel.settimeout(10)
                channel.connect(broker.channel)
                channel.sendall(b"x\n")
                assert channel.recv(100).startswith(b'{"registered": false}')
        time.sleep(0.5)
        refused = [event for event in broker.events() if event["event"] == EVENT_REGISTRATION_REFUSED]
        assert cap <= len(refused) <= 2 * cap < attempts, len(refused)
        assert all(event["message"] == "a registration was refused" for event in refused)
    finally:
        broker.stop()
        shutil.rmtree(base, ignore_errors=True)


def broker_constant(name):
    from conftest import python_constants

    return python_constants(BROKER.read_bytes())[name]


def refused_at_once(setup):
    extra = socket.create_connection((setup.broker.ip, setup.broker.port), timeout=10)
    try:
        extra.sendall(f"GET /api/contents HTTP/1.1\r\nHost: {setup.broker.host}\r\n\r\n".encode())
        return extra.recv(100) == b""
    except ConnectionResetError:
        return True
    finally:
        extra.close()


def wait_served(setup):
    deadline = time.monotonic() + 10
    while True:  # the count comes back as the broker sees them close
        try:
            if request(setup, "GET", "/api/contents")[0] == 200:
                return
        except (ConnectionError, http.client.RemoteDisconnected):
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_one_account_holds_a_capped_number_of_connections_and_gets_them_back(setup):
    cap = broker_constant("MAX_CONNECTIONS_PER_ACCOUNT")
    held = [socket.create_connection((setup.broker.ip, setup.broker.port), timeout=10) for _ in range(cap)]
    try:
        assert refused_at_once(setup)
    finally:
        for connection in held:
            connection.close()
    wait_served(setup)


def test_websockets_count_against_the_cap(setup):
    """A WebSocket holds its browser connection (and one to the server) for as long as it is open:
    it counts until it closes, not only until its handshake's request ends."""
    cap = broker_constant("MAX_CONNECTIONS_PER_ACCOUNT")
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        f"GET /api/events/subscribe HTTP/1.1\r\nHost: {setup.broker.host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://{setup.broker.host}\r\n\r\n"
    ).encode()
    held = []
    try:
        for _ in range(cap):
            websocket = socket.create_connection((setup.broker.ip, setup.broker.port), timeout=10)
            held.append(websocket)
            websocket.sendall(handshake)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += websocket.recv(4096)
            assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
        assert refused_at_once(setup)
    finally:
        for websocket in held:
            websocket.close()
    wait_served(setup)


def test_only_http_1_1_is_taken(setup):
    received = raw(setup, f"GET /api/contents HTTP/1.0\r\nHost: {setup.broker.host}\r\n\r\n".encode())
    assert raw_status(received) == 400 and b"Only HTTP/1.1" in received, received[:300]


def test_a_websocket_upgrade_with_a_body_is_not_held_whole(setup):
    """An upgrade that is not a bodiless GET is an ordinary request to Forward, which checks it before
    it reads a byte of the body: here its Host, refused at once, though the body never comes."""
    with socket.create_connection((IP, setup.broker.port), timeout=10) as client:
        client.sendall(
            b"POST / HTTP/1.1\r\nHost: evil\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Content-Length: 104857600\r\n\r\n" + b"x" * 1024
        )
        answer = client.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400") and b"Wrong address" in answer, answer[:300]


# ---- 7, 8, 9. the request's own address ----


def test_a_wrong_or_repeated_host_is_refused(setup):
    for host in ("evil", setup.broker.name, f"{IP}:{setup.broker.port}", f"{setup.broker.name}:1"):
        status, headers, body = request(setup, "GET", "/api/contents", headers={"Host": host})
        assert status == 400 and is_broker_page(headers, body, "Wrong address"), (host, status, body[:300])
    for hosts in ((setup.broker.host, setup.broker.host), (setup.broker.host, "evil"), ("evil", setup.broker.host)):
        lines = "".join(f"Host: {host}\r\n" for host in hosts)
        received = raw(setup, f"GET /api/contents HTTP/1.1\r\n{lines}Connection: close\r\n\r\n".encode())
        # tornado 6.6 refuses a repeated Host itself (httputil), before the broker's own check,
        # which stays for a tornado that does not.
        assert raw_status(received) == 400, (hosts, received[:300])


def test_an_absolute_form_target_is_refused(setup):
    host = setup.broker.host
    for target in (f"http://{host}/api/contents", f"http://127.0.0.1:{setup.root.port}/api/contents"):
        received = raw(setup, f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert raw_status(received) == 400, (target, received[:300])


def test_another_origin_is_refused(setup):
    for origin in ("http://py:1", f"http://evil:{setup.broker.port}", f"http://{IP}:{setup.broker.port}", "null"):
        status, headers, body = request(setup, "GET", "/api/contents", headers={"Origin": origin})
        assert status == 403 and is_broker_page(headers, body, "another site"), (origin, status, body[:300])
    status, _, body = request(setup, "GET", "/api/contents", headers={"Origin": f"http://{setup.broker.host}"})
    assert status == 200, body[:300]


# ---- 10, 11. cross-site requests ----


def websocket(setup, path, headers):
    key = base64.b64encode(os.urandom(16)).decode()
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    received = raw(
        setup,
        (
            f"GET {path} HTTP/1.1\r\nHost: {setup.broker.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{lines}\r\n"
        ).encode(),
        headers_only=True,
    )
    return raw_status(received)


def test_a_cross_site_websocket_is_refused(setup):
    kernel = start_kernel(setup)
    try:
        path = f"/api/kernels/{kernel}/channels"
        xsrf = xsrf_cookie(setup)
        cookie = {"Cookie": f"_xsrf={xsrf}"}
        origin = {"Origin": f"http://{setup.broker.host}"}
        for headers in (
            {**origin, **cookie, "Sec-Fetch-Site": "cross-site"},
            {**origin, **cookie, "Sec-Fetch-Site": "same-site"},
            {**cookie, "Origin": "http://evil", "Sec-Fetch-Site": "same-origin"},
            {**cookie, "Origin": f"http://{setup.broker.name}", "Sec-Fetch-Site": "same-origin"},
            {**cookie, "Sec-Fetch-Site": "same-origin"},
            cookie,
        ):
            assert websocket(setup, path, headers) != 101, headers
        assert websocket(setup, path, {**origin, **cookie, "Sec-Fetch-Site": "same-origin"}) == 101
    finally:
        stop_kernel(setup, kernel)


def connections_to(port: int) -> int:
    """Established TCP connections whose remote end is 127.0.0.1:port (the kernel's table)."""
    remote = socket.inet_aton("127.0.0.1")[::-1].hex().upper() + f":{port:04X}"
    with open("/proc/net/tcp") as table:
        return sum(1 for line in list(table)[1:] if line.split()[2] == remote and line.split()[3] == "01")


def test_a_failed_websocket_handshake_leaves_no_connection_to_the_server(setup):
    """A WebSocket upgrade that fails the handshake's own checks (here: no Sec-WebSocket-Key) gets
    a 400 and must not leave a connection to the server open behind it, or one account could
    exhaust the broker's descriptors with requests on one keep-alive connection. (The broker
    checks the handshake before it connects to the server; this fails without that check and
    the close in its finally, both.)"""
    port = setup.root.port
    before = connections_to(port)
    request_line = (
        f"GET /api/events/subscribe HTTP/1.1\r\nHost: {setup.broker.host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{setup.broker.host}\r\n\r\n"
    ).encode()
    with socket.create_connection((IP, setup.broker.port), timeout=10) as client:
        for _ in range(20):
            client.sendall(request_line)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += client.recv(65536)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
            head, _, rest = answer.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            while len(rest) < length:
                rest += client.recv(65536)
    deadline = time.monotonic() + 5
    while connections_to(port) > before:
        assert time.monotonic() < deadline, connections_to(port)
        time.sleep(0.1)


def test_a_post_without_jupyters_xsrf_is_refused(setup):
    status, headers, body = request(setup, "POST", "/api/kernels", headers=same_origin(setup), body=b"{}")
    assert is_jupyter_xsrf_refusal(status, headers, body), (status, body[:300])
    status, _, body = request(setup, "POST", "/api/kernels", headers=with_xsrf(setup), body=b"{}")
    assert status == 201, body[:300]
    stop_kernel(setup, json.loads(body)["id"])


# ---- 12. request smuggling ----


def test_content_length_with_transfer_encoding_is_refused(setup):
    marker = uuid.uuid4().hex
    host = setup.broker.host
    smuggled = f"GET /gb-smuggled-{marker} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    chunked = f"0\r\n\r\n{smuggled}"
    received = raw(
        setup,
        (
            f"POST /gb-front-{marker} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
            f"Sec-Fetch-Site: same-origin\r\nContent-Length: {len(chunked)}\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"{chunked}"
        ).encode(),
    )
    # The broker's own refusal, not only tornado's (which refuses the body after the broker's checks).
    assert raw_status(received) == 400 and b"Content-Length and Transfer-Encoding together" in received, received
    assert b"/gb-smuggled-" not in received
    # A request sent after it, which Jupyter answers 404 and logs: the server logs in order, so
    # once this one is in its log, anything forwarded before it would be too.
    status, _, _ = request(setup, "GET", f"/gb-after-{marker}")
    assert status == 404
    deadline = time.monotonic() + 10
    while f"gb-after-{marker}" not in setup.root.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the server never logged the request after"
        time.sleep(0.1)
    log = setup.root.log.read_text(errors="replace")
    assert f"gb-front-{marker}" not in log and f"gb-smuggled-{marker}" not in log


def test_a_chunked_body_on_another_method_is_refused(setup):
    """tornado's client frames a body it has no length for only on POST, PUT and PATCH: a chunked
    DELETE forwarded would put its body on the kept connection to the server as a next request."""
    marker = uuid.uuid4().hex
    host = setup.broker.host
    smuggled = f"GET /gb-smuggled-{marker} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    body = f"{len(smuggled):x}\r\n{smuggled}\r\n0\r\n\r\n"
    received = raw(
        setup,
        (
            f"DELETE /api/sessions/gb-{marker} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
        ).encode(),
    )
    assert raw_status(received) == 400 and b"A chunked body is taken only with" in received, received[:300]
    status, _, _ = request(setup, "GET", f"/gb-after-{marker}")
    assert status == 404
    deadline = time.monotonic() + 10
    while f"gb-after-{marker}" not in setup.root.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the server never logged the request after"
        time.sleep(0.1)
    assert f"gb-smuggled-{marker}" not in setup.root.log.read_text(errors="replace")


# ---- 13, 14. no server ----


def assert_not_running_page(status, content_type, body):
    assert status == 503, (status, body[:300])
    assert content_type.startswith("text/html")
    assert "not running" in body
    lowered = body.lower()
    assert "password" not in lowered and "token" not in lowered, body


def test_an_account_with_no_server_gets_the_brokers_page(stack):
    setup = stack
    need(_exists("nobody"), "the account nobody")
    nobody = Account("nobody", setup.base)
    answer = request_as(nobody, setup.broker.ip, setup.broker.port, "GET", "/tree", {"Host": setup.broker.host})
    assert_not_running_page(answer["status"], answer["type"], answer["body"])


def test_a_registration_ends_with_its_server(setup):
    status, _, _ = request(setup, "GET", "/api/contents")
    assert status == 200
    port = setup.root.port
    count = len(setup.broker.events())
    setup.root.proc.terminate()
    setup.root.proc.wait(timeout=30)
    wait_ended(setup, port, count)
    (ended,) = events_since(setup, count, EVENT_REGISTRATION_ENDED)
    assert ended["account"] == 0
    status, headers, body = request(setup, "GET", "/tree")
    assert_not_running_page(status, headers.get("Content-Type", ""), body.decode())
    # The other account's server is untouched.
    other = request_as(
        setup.other.account, setup.broker.ip, setup.broker.port, "GET", "/api/contents", {"Host": setup.broker.host}
    )
    assert other["status"] == 200


# ---- root's own backends in place of its server (root's server is stopped from here on) ----


class Echo:
    """A backend of root's, registered with the broker in place of root's server: answers each
    request with its target and headers as it received them."""

    def __init__(self, setup):
        self.setup = setup
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.secret = secrets.token_urlsafe(32)
        path = setup.base / "home-root/echo.json"
        self.port = self.listener.getsockname()[1]
        setup.root.account.write(path, json.dumps({"port": self.port, "secret": self.secret}))
        self.channel, answer = register(setup, path)
        assert answer == {"registered": True}
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.running:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(10)
                head = b""
                while b"\r\n\r\n" not in head:
                    more = connection.recv(65536)
                    if not more:
                        break
                    head += more
                lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
                headers = [[part.strip() for part in line.split(":", 1)] for line in lines[1:]]
                seen = json.dumps({"target": lines[0].split(" ")[1], "headers": headers}).encode()
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(seen), seen)
                )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.listener.close()
        count = len(self.setup.broker.events())
        self.channel.close()
        wait_ended(self.setup, self.port, count)


def test_the_server_behind_gets_no_token_and_only_the_brokers_sign_in(root_free):
    setup = root_free
    with Echo(setup) as echo:
        secret = echo.secret
        query = f"token={secret}&keep=1&tok%65n={secret}&%74oken={secret}&token"
        sent = {
            "Authorization": f"token {secret}",
            "Proxy-Authorization": "Basic eDp5",
            "X-Gen-Bundle-Broker": "forged",
            "X-Forwarded-For": "10.0.0.1",
            "X-Forwarded-Host": "evil",
            "Forwarded": "for=10.0.0.1",
        }
        status, _, body = request(setup, "GET", f"/api/contents?{query}", headers=sent)
        assert status == 200, body[:300]
        seen = json.loads(body)
    assert seen["target"] == "/api/contents?keep=1"
    names = [name.lower() for name, _ in seen["headers"]]
    for name in sent:
        if name != "X-Gen-Bundle-Broker":
            assert name.lower() not in names, seen
    assert [value for name, value in seen["headers"] if name.lower() == "x-gen-bundle-broker"] == [secret]
    assert [value for name, value in seen["headers"] if name.lower() == "host"] == [setup.broker.host]


def test_a_port_taken_over_by_another_account_is_not_forwarded_to(root_free):
    setup = root_free
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    path = setup.base / "home-root/takeover.json"
    setup.root.account.write(path, json.dumps({"port": port, "secret": "t" * 43}))
    channel, answer = register(setup, path)
    squatter = None
    try:
        assert answer == {"registered": True}
        listener.close()  # the server ends; its registration is still open
        other = setup.other.account
        squatter = other.popen(
            [SYSTEM_PYTHON, "-c", SQUAT, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert squatter.stdout.readline().strip() == "listening"
        status, headers, body = request(setup, "GET", "/api/contents")
        squatter.stdin.close()
        assert squatter.stdout.read().split() == ["connections", "0"]
        assert status == 502 and b"squatter" not in body, body[:300]
        assert is_broker_page(headers, body, "not answering")
    finally:
        count = len(setup.broker.events())
        channel.close()
        listener.close()
        if answer == {"registered": True}:
            wait_ended(setup, port, count)
        if squatter is not None:
            squatter.kill()
            squatter.wait()


def _exists(account):
    try:
        pwd.getpwnam(account)
    except KeyError:
        return False
    return True
