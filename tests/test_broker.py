"""The broker, for real on Linux: it holds http://py:PORT/ and two real accounts each reach their
own notebook server there, from their own headless Chromium, with no token, password or sign-in.

The broker runs as root (the machine's service); one server runs as this test's own account
(root), the other as a second real account created for the test and removed after it. Each
server registers with the broker by its own code (templates/python/registration.py). Which
account opened a browser connection is the kernel's answer (sock_diag: the socket's uid), as on Windows
it is GetExtendedTcpTable's owning process and that process's session.
"""

from __future__ import annotations

import errno
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from conftest import need
from support.broker import (
    BROKER,
    Account,
    Broker,
    Server,
    chromium,
    ensure_account,
    free_port,
    remove_account,
    shared_folder,
)
from support.cdp import Chromium

OTHER_ACCOUNT = "gb-other"

# Runs in the page at http://py:PORT/: starts a kernel through the broker (a POST with Jupyter's
# _xsrf), opens the kernel's WebSocket through the broker, runs one cell and returns its output.
RUN_A_CELL = r"""
(async () => {
  const xsrf = decodeURIComponent(document.cookie.match(/(?:^|; )_xsrf=([^;]+)/)[1]);
  const made = await fetch('/api/kernels', {method: 'POST', headers: {'X-XSRFToken': xsrf,
    'Content-Type': 'application/json'}, body: '{}'});
  if (made.status !== 201) return 'kernel POST: ' + made.status;
  const kernel = await made.json();
  const ws = new WebSocket(`ws://${location.host}/api/kernels/${kernel.id}/channels`);
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error('WebSocket refused')); });
  const msgId = 'cell-' + Math.random();
  const output = new Promise((ok) => {
    let text = '';
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.parent_header.msg_id !== msgId) return;
      if (msg.msg_type === 'stream') text += msg.content.text;
      if (msg.msg_type === 'status' && msg.content.execution_state === 'idle') ok(text);
    };
  });
  ws.send(JSON.stringify({header: {msg_id: msgId, msg_type: 'execute_request', username: '', session: 's',
    version: '5.3', date: new Date().toISOString()}, parent_header: {}, metadata: {}, channel: 'shell',
    content: {code: 'import os; print("uid", os.getuid(), os.getcwd())', silent: false, store_history: false,
      user_expressions: {}, allow_stdin: false, stop_on_error: true}}));
  const text = await output;
  ws.close();
  return text;
})()
"""

# A notebook of about 20 MB saved and read back through the broker, as the front end does.
BIG_NOTEBOOK = r"""
(async () => {
  const xsrf = decodeURIComponent(document.cookie.match(/(?:^|; )_xsrf=([^;]+)/)[1]);
  const text = 'x'.repeat(20 * 1024 * 1024);
  const notebook = {nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{cell_type: 'code',
    id: 'big', source: 'print(1)', metadata: {}, execution_count: 1, outputs: [{output_type: 'stream',
    name: 'stdout', text: text}]}]};
  const saved = await fetch('/api/contents/big.ipynb', {method: 'PUT', headers: {'X-XSRFToken': xsrf,
    'Content-Type': 'application/json'}, body: JSON.stringify({type: 'notebook', format: 'json',
    content: notebook})});
  if (saved.status !== 201 && saved.status !== 200) return 'PUT: ' + saved.status;
  const loaded = await (await fetch('/api/contents/big.ipynb')).json();
  return loaded.content.cells[0].outputs[0].text.length;
})()
"""


@pytest.fixture(scope="module")
def other_account():
    need(sys.platform == "linux" and os.geteuid() == 0, "root on Linux, to run the broker and a second account")
    name, made = ensure_account(OTHER_ACCOUNT)
    yield name
    if made:
        remove_account(name)


@pytest.fixture
def behind_broker(other_account):
    """The broker and both accounts' servers, each registered."""
    base = shared_folder()
    broker = Broker(base, "127.0.0.13", free_port("127.0.0.13"))
    servers = []
    try:
        for name in ("root", other_account):
            servers.append(Server(Account(name, base), broker))
        for server in servers:
            server.wait_registered()
        yield broker, servers
    finally:
        for server in servers:
            server.stop()
        broker.stop()
        shutil.rmtree(base, ignore_errors=True)


def get(broker: Broker, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(broker.ip, broker.port, timeout=30)
    try:
        connection.request("GET", path, headers={"Host": broker.host})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_two_accounts_each_run_a_cell_in_their_own_kernel_at_the_same_url(behind_broker):
    browser = chromium()
    need(browser, "Chromium (Debian: apt-get install chromium)")
    broker, servers = behind_broker
    url = f"http://{broker.host}/tree"
    outputs = {}
    for server in servers:
        account = server.account
        profile = account.mkdir(account.home / "chromium")
        env = account.env(XDG_CONFIG_HOME=str(profile / "config"), XDG_CACHE_HOME=str(profile / "cache"))
        page = Chromium(
            browser,
            str(profile / "profile"),
            f"MAP {broker.name} {broker.ip}",
            user=None if account.uid == 0 else account.uid,
            group=None if account.uid == 0 else account.gid,
            env=env,
        )
        try:
            tab = page.open(url)
            page.wait_for(tab, "document.readyState === 'complete' && document.cookie.includes('_xsrf=')")
            # Jupyter's own page, reached with no token and no sign-in, and no token in it.
            assert page.evaluate(tab, "location.href") == url
            assert page.evaluate(tab, "!!document.getElementById('jupyter-config-data')")
            assert (
                page.evaluate(tab, "JSON.parse(document.getElementById('jupyter-config-data').textContent).token") == ""
            )
            outputs[account.name] = page.evaluate(tab, RUN_A_CELL)
            if account.uid != 0:
                assert page.evaluate(tab, BIG_NOTEBOOK) == 20 * 1024 * 1024, [
                    (e["reason"], e["path"]) for e in broker.events() if e["event"] == 300
                ]
        finally:
            page.close()
    for server in servers:
        assert outputs[server.account.name].split() == ["uid", str(server.account.uid), str(server.account.home)], (
            outputs
        )
    registered = {(event["account"], event["port"]) for event in broker.events() if event["event"] == 200}
    assert registered == {(server.account.uid, server.port) for server in servers}


def test_a_restarted_worker_never_frees_the_address_and_servers_register_again(behind_broker):
    broker, servers = behind_broker
    other = servers[1].account
    first_worker = broker.worker_pid()
    os.kill(first_worker, signal.SIGKILL)
    # While the supervisor starts a new worker, the other account tries to take the address, on
    # the address itself and on 0.0.0.0 (the wildcard bind Windows would let through).
    grab = (
        "import socket, sys, time\n"
        "won = []\n"
        "deadline = time.monotonic() + 4\n"
        "while time.monotonic() < deadline:\n"
        "    for address in (sys.argv[1], '0.0.0.0'):\n"
        "        s = socket.socket()\n"
        "        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "        try:\n"
        "            s.bind((address, int(sys.argv[2])))\n"
        "            s.listen()\n"
        "            won.append(address)\n"
        "        except OSError as exc:\n"
        f"            assert exc.errno == {errno.EADDRINUSE}, exc\n"
        "        s.close()\n"
        "print('won', won)\n"
    )
    grabbed = other.run(
        [other.python, "-c", grab, broker.ip, str(broker.port)], capture_output=True, text=True, timeout=60
    )
    assert grabbed.returncode == 0, grabbed.stderr
    assert grabbed.stdout.split() == ["won", "[]"]
    broker.wait_for(lambda: broker.worker_pid() not in (None, first_worker), "a new worker")
    for server in servers:
        server.wait_registered(count=2)
    status, body = get(broker, "/api/contents")
    assert status == 200, body
    ended = [event for event in broker.events() if event["event"] == 103]
    assert ended and ended[-1]["code"] == -signal.SIGKILL


def test_a_new_broker_file_is_run_by_the_next_worker_while_the_supervisor_holds_the_address(tmp_path):
    """install.ps1 upgrades a running broker by writing its file and stopping its worker
    (Restart-BrokerWorker): the supervisor, which keeps the address, starts the next worker from
    the file as it is on disk then."""
    program = tmp_path / "py.broker.py"
    program.write_bytes(BROKER.read_bytes())
    marker = tmp_path / "new-worker"
    broker = Broker(tmp_path, "127.0.0.13", free_port("127.0.0.13"), program=program)
    try:
        supervisor, first_worker = broker.proc.pid, broker.worker_pid()
        assert first_worker is not None
        text = program.read_text()
        new = text.replace(
            "import sys\n", f"import sys\nif sys.argv[1:2] == ['worker']: open({str(marker)!r}, 'w').close()\n", 1
        )
        assert new != text
        program.write_text(new)  # while the broker runs, as install.ps1 writes it
        assert not marker.exists()  # the running worker is the old file's
        os.kill(first_worker, signal.SIGKILL)
        broker.wait_for(lambda: marker.exists(), "a worker of the new file")
        broker.wait_for(lambda: broker.worker_pid() not in (None, first_worker), "the new worker")
        assert broker.proc.pid == supervisor and broker.proc.poll() is None
        with pytest.raises(OSError):  # the address stayed held
            with socket.socket() as grab:
                grab.bind((broker.ip, broker.port))
    finally:
        broker.stop()


def test_the_broker_names_who_holds_its_address_and_takes_it_once_free(tmp_path):
    """Task Scheduler restarts only a task that failed to start: a broker that ended when the address
    was taken (at boot, or in the seconds install.ps1 restarts it) would stay down until the next boot.
    So it names the holder in its log (event 101) and keeps trying, and holds the address once free."""
    need(sys.platform == "linux" and os.geteuid() == 0, "root on Linux")
    os.chmod(tmp_path, 0o755)
    port = free_port("127.0.0.13")
    holder = socket.socket()
    holder.bind(("0.0.0.0", port))
    holder.listen()
    broker = Broker(tmp_path, "127.0.0.13", port, wait=False)
    try:
        broker.wait_for(lambda: 101 in [e["event"] for e in broker.events()], "the broker to name the holder")
        (failed, *_) = [event for event in broker.events() if event["event"] == 101]
        assert failed["address"] == f"127.0.0.13:{port}"
        assert failed["listeners"] == [f"0.0.0.0 uid {os.geteuid()}"]
        assert broker.worker_pid() is None and 100 not in [e["event"] for e in broker.events()]
        holder.close()
        broker.wait_until_serving(timeout=30)
        assert [e["event"] for e in broker.events()].count(100) == 1
        status, _ = get(broker, "/api/contents")
        assert status == 503  # the broker's own page: no server registered
    finally:
        holder.close()
        broker.stop()


def test_another_listener_on_the_brokers_port_is_logged(other_account):
    """Windows lets another account listen on the port at 0.0.0.0 beside the broker's exclusive
    address; Linux refuses that, so here the other account takes another loopback address."""
    base = shared_folder()
    broker = Broker(base, "127.0.0.13", free_port("127.0.0.13"), scan_seconds=0.2)
    other = Account(other_account, base)
    squatter = other.popen(
        [
            other.python,
            "-c",
            "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.14', int(sys.argv[1])));"
            " s.listen(); print('ready', flush=True); time.sleep(60)",
            str(broker.port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert squatter.stdout.readline().strip() == "ready"
        seen = lambda: [e for e in broker.events() if e["event"] == 102]  # noqa: E731
        broker.wait_for(seen, "the other listener to be logged", timeout=20)
        assert seen()[0]["listener"] == f"127.0.0.14 uid {other.uid}"
    finally:
        squatter.kill()
        squatter.wait()
        broker.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("mode", ["page", "ntlm", "dual-stack"])
def test_the_shared_pc_squatters_cannot_take_the_brokers_address(behind_broker, mode):
    """tests/test_shared_pc.py's squatter, as the other account, against the broker: whatever it
    binds (the address, or [::] dual-stack), the port is the broker's, and the owner's
    connection still reaches the owner's own server."""
    from test_shared_pc import SQUATTER

    broker, servers = behind_broker
    other = servers[1].account
    squatter = other.run(
        [other.python, "-I", "-c", SQUATTER, broker.ip, str(broker.port), mode],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert squatter.returncode != 0 and "ready" not in squatter.stdout
    assert "Address already in use" in squatter.stderr, squatter.stderr
    (servers[0].notebooks / "mine.txt").write_text("root's")
    status, body = get(broker, "/api/contents")
    assert status == 200 and b"mine.txt" in body
