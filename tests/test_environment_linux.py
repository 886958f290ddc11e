"""The same build code for a Linux target: the archive, laid out and wired to this machine's
Python, serves the real notebook front end to headless Chromium.

The Windows archive cannot run here; this one is made by the very same code (resolution,
download, unpacking), only for manylinux and the CI's CPython. A notebook page that renders
its file browser proves the unpacking complete: the server's Python packages, the front
end's static files in site-packages, and the labextensions and server settings that the
wheels' .data/data put in the environment's share/ and etc/.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from generator.environment import Target, build_environment

from conftest import need

LINUX = Target("linux", f"3.{sys.version_info.minor}")
IP = "127.0.0.73"


@pytest.fixture(scope="module")
def linux_env(env_cache, uv_bin):
    return build_environment(
        requirements=("notebook",), target=LINUX, cache=env_cache, name="py", generator_version="0.0.0"
    )


def wire(archive: bytes, folder: Path) -> Path:
    """What install.ps1 does on Windows, done the POSIX way: extract, pyvenv.cfg, bin/python."""
    with zipfile.ZipFile(io.BytesIO(archive)) as entries:
        entries.extractall(folder)
    base = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    (folder / "pyvenv.cfg").write_text(
        f"home = {base.parent}\ninclude-system-site-packages = false\n"
        f"version = {'.'.join(map(str, sys.version_info[:3]))}\n"
    )
    python = folder / "bin" / "python"
    python.parent.mkdir(exist_ok=True)
    python.symlink_to(base)
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((IP, 0))
        return probe.getsockname()[1]


def test_two_builds_from_one_lock_are_identical(linux_env, env_cache):
    again = build_environment(
        requirements=("notebook",),
        target=LINUX,
        cache=env_cache,
        lock=linux_env.lock.decode("ascii"),
        offline=True,
        name="py",
        generator_version="0.0.0",
    )
    assert again.archive == linux_env.archive


def test_the_environment_serves_the_notebook_front_end(linux_env, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    need(chromium, "Chromium (Debian: apt-get install chromium)")
    env_dir = tmp_path / "env"
    python = wire(linux_env.archive, env_dir)
    home = tmp_path / "home"
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "hello-from-the-bundle.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    # Nothing of this test run's own environment may help: no PYTHONPATH, no user site, a new HOME.
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONNOUSERSITE": "1", "LANG": "C.UTF-8"}
    where = subprocess.run(
        [
            python,
            "-c",
            "import sys, notebook, jupyter_server, zmq; print(sys.prefix); print(notebook.__file__); "
            "print(zmq.__file__)",
        ],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
    ).stdout.split()
    assert where[0] == str(env_dir)
    assert all(path.startswith(str(env_dir / "lib")) for path in where[1:]), where

    port = free_port()
    token = "t" * 48
    log = tmp_path / "server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [
                python,
                "-m",
                "notebook",
                "--no-browser",
                f"--ServerApp.ip={IP}",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={notebooks}",
                f"--IdentityProvider.token={token}",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    try:
        base = f"http://{IP}:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert server.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.5)
        # The front end's labextensions come from the environment's share/jupyter (.data/data).
        with urllib.request.urlopen(f"{base}/lab/api/extensions?token={token}", timeout=10) as answer:
            extensions = {item["name"] for item in json.load(answer)}
        assert "jupyter-notebook-lab-extension" in extensions, extensions
        dom_file = tmp_path / "dom.html"
        with open(dom_file, "wb") as dom:
            subprocess.run(
                [
                    chromium,
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                    f"--user-data-dir={tmp_path / 'chromium'}",
                    "--virtual-time-budget=20000",
                    "--dump-dom",
                    f"{base}/tree?token={token}",
                ],
                stdout=dom,
                stderr=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
        rendered = dom_file.read_text(errors="replace")
        # Rendered by the front end's JavaScript, not sent by the server: the file browser lists the notebook.
        assert "jp-DirListing" in rendered, rendered[:3000]
        assert "hello-from-the-bundle.ipynb" in rendered, rendered[:3000]
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
