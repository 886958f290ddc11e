"""Broker benchmark: what templates/python/broker.py costs against talking to the same server directly.

    python benchmarks/broker.py [--requests N] [--executes N] [--broker PATH] [--py-spy FILE]

Run as root on Linux. Starts the broker (``broker.py serve`` on 127.0.0.13) and root's real
notebook server behind it (tests/support/broker.py: the server registers with the broker by its
own code), and measures, each time through the broker (``Host: py:PORT``, the browser's headers)
and directly to the server's port on 127.0.0.1 (``Authorization: token <secret>`` from its
registration file):

- ``GET /api/contents``: a new TCP connection for every request, and one kept-alive connection;
  N requests each way (default 300);
- a kernel execute round trip over the kernel's WebSocket (``/api/kernels/<id>/channels``): an
  ``execute_request`` of ``1+1`` sent, timed until its ``execute_reply`` on the shell channel;
  N round trips each way (default 200), both ways on one kernel, each sample taken once the
  kernel and both connections are quiet again. Jupyter's server writes the messages of a reply
  one by one on a socket without TCP_NODELAY, so each round trip waits about 40 ms for the
  receiver's delayed ACK (the broker's, or this script's): what a browser sees, either way;
- the CPU time the broker's worker spends on each sample through it (/proc/<pid>/schedstat),
  beside the server's own for each request: a figure the machine's load moves far less;
- the broker's memory: VmHWM (peak resident), VmRSS and RssAnon of the supervisor and of the
  worker, from /proc/<pid>/status, after the runs above.

After a warm-up, the broker and the direct samples alternate (which goes first alternates too),
so that the machine's drift moves both alike. It prints the median and the 99th percentile of
each, and a table of the targets: through the broker at most 1.3 times the
direct median, at most 2 ms added at the 99th percentile, and at most 40 MB resident for the
broker (supervisor and worker together, each at its peak). It asserts nothing.

--broker PATH measures another copy of broker.py (a change being tried) in place of
templates/python/broker.py. --py-spy FILE records the worker with py-spy (pip install py-spy)
during the timed runs: a flame graph (FILE.svg), collapsed stacks (FILE.txt) or speedscope
(FILE.json); the figures then carry py-spy's sampling cost.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import http.cookies
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import websocket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import support.broker  # noqa: E402
from support.broker import Account, Broker, Server, free_port  # noqa: E402

BROKER_IP = "127.0.0.13"
CONTENTS = "/api/contents"
MEDIAN_RATIO, P99_ADDED_MS, RESIDENT_MB = 1.3, 2.0, 40.0


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Endpoint:
    """One way to reach the server's HTTP API: an address and the headers that sign the request in."""

    def __init__(self, ip: str, port: int, headers: dict[str, str]) -> None:
        self.ip, self.port, self.headers = ip, port, headers
        self.kept: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def get(self, connection: http.client.HTTPConnection, path: str) -> bytes:
        connection.request("GET", path, headers=self.headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} via {self.ip}:{self.port}: {response.status} {body[:300]!r}")
        return body

    def new_connection(self) -> float:
        start = time.perf_counter()
        connection = http.client.HTTPConnection(self.ip, self.port)
        self.get(connection, CONTENTS)
        connection.close()
        return time.perf_counter() - start

    def keep_alive(self) -> float:
        if self.kept is None:
            self.kept = http.client.HTTPConnection(self.ip, self.port)
            self.kept.connect()
        sock = self.kept.sock
        start = time.perf_counter()
        self.get(self.kept, CONTENTS)
        elapsed = time.perf_counter() - start
        if self.kept.sock is not sock:
            self.reconnects += 1  # the other end closed the connection: this sample was not kept alive
        return elapsed

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()


class KernelChannel:
    """One WebSocket to a kernel's channels, in Jupyter's JSON protocol (no subprotocol asked)."""

    def __init__(self, url: str, **options) -> None:
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(f"{url}?session_id={self.session}", timeout=30, **options)

    def message(self, code: str) -> tuple[str, str]:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "benchmark",
            "session": self.session,
            "date": datetime.datetime.now(datetime.UTC).isoformat(),
            "version": "5.3",
        }
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        body = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
        return msg_id, json.dumps(body)

    def until(self, msg_id: str, reply: bool) -> float:
        """Reads until the kernel is idle again after msg_id (and, with reply, its execute_reply
        has come); returns when the execute_reply came."""
        replied, idle = (None if reply else 0.0), False
        while replied is None or not idle:
            message = json.loads(self.ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["header"]["msg_type"]
            if kind == "execute_reply" and message.get("channel") == "shell":
                replied = time.perf_counter()
                if message["content"]["status"] != "ok":
                    raise RuntimeError(f"execute_reply: {message['content']}")
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                idle = True
        return replied

    def round_trip(self, other: KernelChannel) -> float:
        """One execute of 1+1 from this connection, timed to its execute_reply; then both
        connections read the rest of its messages (the kernel's output goes to both)."""
        msg_id, text = self.message("1+1")
        start = time.perf_counter()
        self.ws.send(text)
        replied = self.until(msg_id, reply=True)
        other.until(msg_id, reply=False)
        return replied - start

    def close(self) -> None:
        self.ws.close()


def start_kernel(broker: Broker) -> tuple[str, str]:
    """A kernel started through the broker as a browser page would: Jupyter's _xsrf cookie from
    GET /tree, then POST /api/kernels with it. Returns the kernel's id and the cookie."""
    origin = f"http://{broker.host}"
    connection = http.client.HTTPConnection(broker.ip, broker.port)
    connection.request("GET", "/tree", headers={"Host": broker.host})
    response = connection.getresponse()
    response.read()
    cookies = http.cookies.SimpleCookie()
    for value in response.headers.get_all("Set-Cookie") or []:
        cookies.load(value)
    if response.status != 200 or "_xsrf" not in cookies:
        raise RuntimeError(f"GET /tree through the broker: {response.status}, no _xsrf cookie")
    xsrf = cookies["_xsrf"].value
    cookie = f"_xsrf={xsrf}"
    headers = {
        "Host": broker.host,
        "Origin": origin,
        "Sec-Fetch-Site": "same-origin",
        "Cookie": cookie,
        "X-XSRFToken": xsrf,
        "Content-Type": "application/json",
    }
    connection.request("POST", "/api/kernels", body=b"{}", headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if response.status != 201:
        raise RuntimeError(f"POST /api/kernels through the broker: {response.status} {body[:300]!r}")
    return json.loads(body)["id"], cookie


def memory(pid: int) -> dict[str, float]:
    """VmHWM, VmRSS and RssAnon (the part no other process shares) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS", "RssAnon"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def cpu_seconds(pid: int) -> float:
    """The time a process has run on a CPU (the scheduler's own count, in nanoseconds)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def alternate(count: int, broker: Callable[[], float], direct: Callable[[], float]) -> tuple[list, list]:
    """count samples of each, broker and direct by turns, which goes first alternating."""
    through, beside = [], []
    for turn in range(count):
        if turn % 2 == 0:
            through.append(broker())
            beside.append(direct())
        else:
            beside.append(direct())
            through.append(broker())
    return through, beside


def start_py_spy(pid: int, output: str) -> subprocess.Popen | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(py_spy):
        print("py-spy is not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    kind = {".txt": "raw", ".json": "speedscope"}.get(Path(output).suffix, "flamegraph")
    argv = [py_spy, "record", "--pid", str(pid), "--output", output, "--format", kind, "--rate", "500", "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def row(label: str, statistic: str, broker: float, direct: float, ratio: str, target: str, met: bool) -> str:
    return (
        f"  {label:34} {statistic:6} {broker * 1000:8.2f} ms {direct * 1000:8.2f} ms  {ratio:>16}  "
        f"{target:14} {'yes' if met else 'NO'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="GET /api/contents each way, each variant")
    parser.add_argument("--executes", type=int, default=200, help="kernel execute round trips each way")
    parser.add_argument("--broker", type=Path, help="another broker.py to measure (a change being tried)")
    parser.add_argument(
        "--py-spy", metavar="FILE", help="record the worker with py-spy into FILE (.svg, .txt or .json)"
    )
    options = parser.parse_args()
    requests, executes = max(10, options.requests), max(10, options.executes)
    if sys.platform != "linux" or os.geteuid() != 0:
        print("runs as root on Linux only", file=sys.stderr)
        return 2

    if options.broker is not None:
        support.broker.BROKER = options.broker.resolve()
    base = Path(tempfile.mkdtemp(prefix="gb-broker-bench-"))
    os.chmod(base, 0o755)
    broker = server = profiler = kernel = None
    opened: list = []
    try:
        started = time.perf_counter()
        broker = Broker(base, BROKER_IP, free_port(BROKER_IP))
        server = Server(Account("root", base), broker)
        server.wait_registered()
        ready = time.perf_counter() - started
        worker = broker.worker_pid()
        through = Endpoint(broker.ip, broker.port, {"Host": broker.host})
        direct = Endpoint("127.0.0.1", server.port, {"Authorization": f"token {server.secret}"})
        opened += [through, direct]

        kernel, cookie = start_kernel(broker)
        path = f"/api/kernels/{kernel}/channels"
        kernel_through = KernelChannel(
            f"ws://{broker.ip}:{broker.port}{path}",
            host=broker.host,
            origin=f"http://{broker.host}",
            header=["Sec-Fetch-Site: same-origin"],
            cookie=cookie,
        )
        opened.append(kernel_through)
        kernel_direct = KernelChannel(
            f"ws://127.0.0.1:{server.port}{path}",
            suppress_origin=True,
            header=[f"Authorization: token {server.secret}"],
        )
        opened.append(kernel_direct)

        warm = max(20, requests // 10)
        alternate(warm, through.new_connection, direct.new_connection)
        alternate(warm, through.keep_alive, direct.keep_alive)
        alternate(
            max(20, executes // 10),
            lambda: kernel_through.round_trip(kernel_direct),
            lambda: kernel_direct.round_trip(kernel_through),
        )
        through.reconnects = direct.reconnects = 0
        idle = {"supervisor": memory(broker.proc.pid), "worker": memory(worker)}

        if options.py_spy:
            profiler = start_py_spy(worker, options.py_spy)
            time.sleep(0.5)
        phases = {
            "GET /api/contents, new connection": (requests, through.new_connection, direct.new_connection),
            "GET /api/contents, kept alive": (requests, through.keep_alive, direct.keep_alive),
            "kernel execute over WebSocket": (
                executes,
                lambda: kernel_through.round_trip(kernel_direct),
                lambda: kernel_direct.round_trip(kernel_through),
            ),
        }
        results, cpu = {}, {}  # label -> the worker's CPU time per broker sample, the server's per sample
        timed = time.perf_counter()
        for label, (count, via_broker, via_direct) in phases.items():
            before = cpu_seconds(worker), cpu_seconds(server.proc.pid)
            results[label] = alternate(count, via_broker, via_direct)
            cpu[label] = (
                (cpu_seconds(worker) - before[0]) / count,
                (cpu_seconds(server.proc.pid) - before[1]) / 2 / count,
            )
        timed = time.perf_counter() - timed
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
            profiler = None
        peak = {"supervisor": memory(broker.proc.pid), "worker": memory(worker)}

        print(
            f"{support.broker.BROKER}: {broker.host} on {broker.ip}:{broker.port} (worker pid {worker}), root's server on "
            f"127.0.0.1:{server.port}; ready in {ready:.1f} s; timed runs {timed:.1f} s"
        )
        print(f"samples each way: {requests} HTTP requests per variant, {executes} execute round trips\n")
        print(f"  {'':34} {'':6} {'broker':>11} {'direct':>11}  {'broker/direct':>16}  {'target':14} met")
        for label, (broker_samples, direct_samples) in results.items():
            median_b, median_d = statistics.median(broker_samples), statistics.median(direct_samples)
            p99_b, p99_d = percentile(broker_samples, 0.99), percentile(direct_samples, 0.99)
            ratio, added = median_b / median_d, (p99_b - p99_d) * 1000
            print(
                row(label, "median", median_b, median_d, f"{ratio:.2f}x", f"<= {MEDIAN_RATIO}x", ratio <= MEDIAN_RATIO)
            )
            print(
                row(
                    "", "p99", p99_b, p99_d, f"{added:+.2f} ms added", f"<= +{P99_ADDED_MS:g} ms", added <= P99_ADDED_MS
                )
            )
        if through.reconnects or direct.reconnects:
            print(
                f"  (kept alive: the broker closed {through.reconnects}, the server {direct.reconnects} "
                "connections; those samples opened a new one)"
            )
        print("\n  CPU time per sample (ms): the broker's worker for each through it; the server for each either way")
        for label, (worker_seconds, server_seconds) in cpu.items():
            print(f"  {label:34} worker {worker_seconds * 1000:6.2f}   server {server_seconds * 1000:6.2f}")
        print(f"\n  {'broker memory (MB)':34} {'idle VmRSS':>11} {'VmRSS':>8} {'VmHWM':>8} {'RssAnon':>8}")
        for role in ("supervisor", "worker"):
            print(
                f"  {role:34} {idle[role]['VmRSS']:11.1f} {peak[role]['VmRSS']:8.1f} {peak[role]['VmHWM']:8.1f} "
                f"{peak[role]['RssAnon']:8.1f}"
            )
        both = {name: peak["supervisor"][name] + peak["worker"][name] for name in ("VmRSS", "VmHWM", "RssAnon")}
        idle_both = idle["supervisor"]["VmRSS"] + idle["worker"]["VmRSS"]
        print(
            f"  {'both':34} {idle_both:11.1f} {both['VmRSS']:8.1f} {both['VmHWM']:8.1f} {both['RssAnon']:8.1f}"
            f"  VmHWM <= {RESIDENT_MB:g} MB: {'yes' if both['VmHWM'] <= RESIDENT_MB else 'NO'}"
        )
        return 0
    finally:
        for each in opened:
            try:
                each.close()
            except Exception:
                pass
        if kernel is not None:
            try:  # the server ends its kernels when it stops, but not when it is killed
                stop = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                stop.request("DELETE", f"/api/kernels/{kernel}", headers={"Authorization": f"token {server.secret}"})
                stop.getresponse().read()
                stop.close()
            except Exception:
                pass
        if profiler is not None:
            profiler.kill()
            profiler.wait()
        if server is not None:
            server.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
