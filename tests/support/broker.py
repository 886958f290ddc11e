"""The broker and the servers behind it, run for real on Linux: the broker as root (as the
machine's service), each account's notebook server as that account, registered by the server's
own code (templates/python/registration.py), and requests sent over real TCP.

Used by tests/test_broker*.py and benchmarks/broker.py.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
BROKER = REPO / "templates" / "python" / "broker.py"
REGISTRATION = REPO / "templates" / "python" / "registration.py"
REGISTRATION_FILE = "registration.json"  # generator/layout.py USER_FILES["registration"]
SITE_PACKAGES = sysconfig.get_paths()["purelib"]  # notebook, tornado: read by every account's server
SYSTEM_PYTHON = "/usr/bin/python3"  # an account other than root cannot enter root's home, where pyenv lives


def shared_folder() -> Path:
    """A folder every account can enter (pytest's tmp_path is under a folder only root can):
    each account's home below it is that account's alone."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="gen-bundle-broker-"))
    os.chmod(folder, 0o755)
    return folder


def free_port(ip: str) -> int:
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


def server_config(name: str, url: str, channel: str) -> str:
    """The Jupyter settings a bundle's server runs with behind the broker: the values, then the
    registration partial, then its settings applied (the launcher's --config file)."""
    values = (
        "import os, secrets, sys\n"
        "from pathlib import Path\n"
        f"NAME = {name!r}\n"
        f"URL = {url!r}\n"
        'STATE = Path(os.environ["GB_STATE"])\n'
        f"REGISTRATION_FILE = {REGISTRATION_FILE!r}\n"
        f"BROKER_CHANNEL = {channel!r}\n"
    )
    return values + REGISTRATION.read_text() + "\nc = get_config()  # noqa: F821\nbehind_broker(c)\n"


class Broker:
    """``broker.py serve`` as root, on ip:port, its channel in a folder only root can write."""

    def __init__(
        self,
        base: Path,
        ip: str,
        port: int,
        name: str = "py",
        scan_seconds: float = 60,
        program: Path = BROKER,
        wait: bool = True,
    ) -> None:
        self.ip, self.port, self.name = ip, port, name
        self.folder = base / "broker"
        self.folder.mkdir(mode=0o755)
        os.chmod(self.folder, 0o755)
        self.channel = str(self.folder / "broker.sock")
        self.log = self.folder / "broker.log"
        self.out = open(self.folder / "broker.out", "ab")
        self.host = name if port == 80 else f"{name}:{port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                str(program),
                "serve",
                "--ip",
                ip,
                "--port",
                str(port),
                "--name",
                name,
                "--channel",
                self.channel,
                "--log",
                str(self.log),
                "--scan-seconds",
                str(scan_seconds),
            ],
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_until_serving()

    def wait_until_serving(self, timeout: float = 60) -> None:
        try:
            self.wait_for(
                lambda: self.worker_pid() is not None and os.path.exists(self.channel), "the broker to start", timeout
            )
        except BaseException:
            self.stop()
            raise

    def events(self) -> list[dict]:
        if not self.log.exists():
            return []
        # A last line without its newline is still being written: read it the next time.
        return [json.loads(line) for line in self.log.read_text().split("\n")[:-1]]

    def worker_pid(self) -> int | None:
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def wait_for(self, condition, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "broker.out").read_text()
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; broker log:\n{self.log.read_text() if self.log.exists() else ''}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


class Account:
    """A real account of this machine with a home only it can enter (root: this test's own)."""

    def __init__(self, name: str, base: Path) -> None:
        entry = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, entry.pw_uid, entry.pw_gid
        self.home = base / f"home-{name}"
        self.home.mkdir()
        os.chown(self.home, self.uid, self.gid)
        os.chmod(self.home, 0o700)
        self.python = sys.executable if self.uid == os.geteuid() else SYSTEM_PYTHON

    def env(self, **more: str) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "JUPYTER_CONFIG_DIR": str(self.home / ".jupyter"),
            "JUPYTER_DATA_DIR": str(self.home / ".local" / "share" / "jupyter"),
            "JUPYTER_RUNTIME_DIR": str(self.home / ".local" / "share" / "jupyter" / "runtime"),
            "IPYTHONDIR": str(self.home / ".ipython"),
        }
        if self.python == SYSTEM_PYTHON:
            env["PYTHONPATH"] = SITE_PACKAGES
        env.update(more)
        return env

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(argv, user=self.uid, group=self.gid, extra_groups=[], env=self.env(), **kwargs)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        env = kwargs.pop("env", None) or self.env()
        return subprocess.Popen(argv, user=self.uid, group=self.gid, extra_groups=[], env=env, cwd=self.home, **kwargs)

    def write(self, path: Path, text: str, mode: int = 0o600) -> None:
        path.write_text(text)
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)

    def mkdir(self, path: Path, mode: int = 0o700) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)
        return path


class Server:
    """An account's real notebook server with the bundle's settings behind the broker."""

    def __init__(self, account: Account, broker: Broker) -> None:
        self.account, self.broker = account, broker
        self.state = account.mkdir(account.home / "state")
        self.notebooks = account.mkdir(account.home / "notebooks")
        self.config = account.home / "server_config.py"
        account.write(self.config, server_config(broker.name, f"http://{broker.host}/", broker.channel))
        self.log = account.home / "server.log"
        self.out = open(self.log, "ab")
        argv = [
            account.python,
            "-m",
            "notebook",
            "--no-browser",
            f"--ServerApp.root_dir={self.notebooks}",
            f"--config={self.config}",
        ]
        if account.uid == 0:
            argv.append("--allow-root")
        self.proc = account.popen(
            argv, env=account.env(GB_STATE=str(self.state)), stdout=self.out, stderr=subprocess.STDOUT
        )

    def registration(self) -> dict:
        return json.loads((self.state / REGISTRATION_FILE).read_text())

    @property
    def port(self) -> int:
        return self.registration()["port"]

    @property
    def secret(self) -> str:
        return self.registration()["secret"]

    def registered_count(self) -> int:
        return self.log.read_text(errors="replace").count("registered with the broker at")

    def wait_registered(self, count: int = 1, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            if self.registered_count() >= count:
                return
            time.sleep(0.1)
        raise AssertionError("the server did not register:\n" + self.log.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def ensure_account(name: str) -> tuple[str, bool]:
    """A system account with no home of its own and no login shell; True when this made it."""
    try:
        pwd.getpwnam(name)
        return name, False
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        if made.returncode == 9:  # made meanwhile by another test session: theirs to remove
            return name, False
        made.check_returncode()
        return name, True


def remove_account(name: str) -> None:
    subprocess.run(["userdel", name], check=False, capture_output=True)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")
