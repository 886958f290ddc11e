"""Headless Chromium, driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no
debugging port that another account could reach. Runs as any account of this machine."""

from __future__ import annotations

import json
import os
import subprocess
import time


class Chromium:
    def __init__(
        self,
        binary: str,
        profile: str,
        host_rules: str,
        *,
        user: int | None = None,
        group: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        to_browser, self._commands = os.pipe()  # the browser reads commands from its fd 3
        self._answers, from_browser = os.pipe()  # and writes answers to its fd 4

        def as_fds_3_and_4() -> None:
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        argv = [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--host-resolver-rules={host_rules}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            argv,
            pass_fds=(3, 4),
            preexec_fn=as_fds_3_and_4,
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._next = 0
        self._buffer = b""

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 120):
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self._answers, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
        raise TimeoutError(method)

    def open(self, url: str) -> str:
        """A new tab at ``url``; returns its DevTools session."""
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        return self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def evaluate(self, session: str, expression: str, timeout: float = 120):
        """Runs JavaScript in the page (awaiting a promise); its value, or raises with the page's exception."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True, "timeout": int(timeout * 1000)},
            session=session,
            timeout=timeout + 10,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"the page's script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(session, expression, timeout=10)
            except (AssertionError, RuntimeError):
                value = None
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    def close(self) -> None:
        try:
            os.close(self._commands)
            os.close(self._answers)
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
