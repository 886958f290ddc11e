"""The broker's Windows channel connection (templates/python/broker.py, WindowsChannelConnection),
its thread run here against a stand-in for the pipe: the connection's own bookkeeping is plain
Python, whatever Windows answers below it."""

from __future__ import annotations

import asyncio
import json
import re
import runpy
import threading
import time

import pytest

from support.broker import BROKER

ACCOUNT = "S-1-5-21-1-2-3-1001"


class Pipe:
    """One client of the pipe: it sends its registration line, then stays connected until closed.
    Reading the registration file blocks until ``release`` is set, as CreateFileW blocks on a file
    whose owner holds an oplock on it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, int] = {}
        self.unread: dict[int, int] = {}
        self.line = b'{"file": "C:\\\\Users\\\\a\\\\registration.json"}\n'
        self.release = threading.Event()
        self.closed = threading.Event()

    def pipe_session(self, handle):
        return 1

    def pipe_available(self, handle):
        return None if self.closed.is_set() else len(self.line)

    def read_handle(self, handle, size):
        data, self.line = self.line[:size], self.line[size:]
        return data

    def pipe_client(self, handle):
        return ACCOUNT, 1, 4242, 0

    def pipe_close(self, handle):
        self.closed.set()

    def read_secret_file(self, path, account):
        self.release.wait(30)
        return b'{"port": 1, "secret": "x"}'


class Log:
    def event(self, *args, **fields) -> None:
        pass


@pytest.fixture(scope="module")
def broker():
    return runpy.run_path(str(BROKER))


async def connect(broker, pipe: Pipe):
    """A channel connection served by its own thread, as the broker's pipe server starts one, once it
    is handed to the event loop."""
    loop = asyncio.get_running_loop()
    connected = loop.create_future()
    connection = broker["WindowsChannelConnection"](pipe, 1, loop)
    thread = threading.Thread(target=connection.run, args=(connected.set_result, Log(), lambda: None), daemon=True)
    thread.start()
    assert await asyncio.wait_for(connected, 10) is connection
    return connection, thread


async def end(connection, thread) -> None:
    connection.close()
    await asyncio.wait_for(connection.wait_closed(), 10)
    thread.join(10)
    assert not thread.is_alive()


def test_a_registration_file_read_that_blocks_keeps_its_account_pending_until_it_returns(broker):
    """A client that holds its own registration file's open in CreateFileW (an oplock) is refused at
    the deadline, but the channel thread it holds stays counted against its account until the read
    returns: it cannot come back for more threads while its earlier ones are still blocked."""
    pipe = Pipe()

    async def scenario():
        connection, thread = await connect(broker, pipe)
        assert pipe.pending == {ACCOUNT: 1}
        connection.deadline = time.monotonic() + 0.3
        with pytest.raises(asyncio.TimeoutError):
            await connection.read_secret_file("C:\\Users\\a\\registration.json")
        connection.settled()  # what serve_registration does when it refuses
        assert pipe.pending == {ACCOUNT: 1}  # the thread is still inside the read
        pipe.release.set()
        for _ in range(100):
            if not pipe.pending:
                break
            await asyncio.sleep(0.05)
        assert pipe.pending == {}  # given back once the read returned
        connection.settled()  # a second call counts for nothing
        assert pipe.pending == {}
        await end(connection, thread)

    asyncio.run(scenario())


def test_a_connection_settled_while_idle_gives_back_its_slot_at_once(broker):
    pipe = Pipe()

    async def scenario():
        connection, thread = await connect(broker, pipe)
        assert pipe.pending == {ACCOUNT: 1}
        connection.settled()
        assert pipe.pending == {}
        await end(connection, thread)

    asyncio.run(scenario())


def test_the_last_start_survives_every_rotation_of_the_log(broker, tmp_path, monkeypatch):
    """install.ps1 finds the broker's process by the log's last start (100), when Windows does not
    show it the broker's command line: refusals that any account can cause, rotated through both
    files, must not push that line out. Each line carries its time in UTC too, which install.ps1
    compares with the process's creation time."""
    monkeypatch.setitem(broker["Log"].event.__globals__, "LOG_BYTES", 4096)
    monkeypatch.setitem(broker["Log"].event.__globals__, "QUIET_EVENTS_PER_MINUTE", 10**6)
    monkeypatch.setattr(broker["PLATFORM"], "report_event", lambda *args: None, raising=False)
    path = tmp_path / "broker.log"
    log = broker["Log"](str(path), "supervisor")
    log.event(100, "started", address="127.0.0.13:80")
    for number in range(400):  # some 60 KB: fifteen rotations
        log.event(300, "refused", peer=number)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["event"] == 100 and lines[0]["message"] == "started"
    assert lines[0]["carried"] is True  # not a new start: install.ps1 would wait for registrations again
    assert [line for line in lines if line["event"] == 100] == lines[:1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[0]["utc"])
    # A move that fails (a reader holds the file) carries nothing into the same file.
    monkeypatch.setattr(broker["os"], "replace", lambda *args: (_ for _ in ()).throw(PermissionError("in use")))
    for number in range(50):
        log.event(300, "refused", peer=number)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines].count(100) == 1
    monkeypatch.undo()
    monkeypatch.setitem(broker["Log"].event.__globals__, "LOG_BYTES", 4096)
    monkeypatch.setitem(broker["Log"].event.__globals__, "QUIET_EVENTS_PER_MINUTE", 10**6)
    monkeypatch.setattr(broker["PLATFORM"], "report_event", lambda *args: None, raising=False)
    # The control: without the carried line, the start is gone from both files.
    monkeypatch.setattr(broker["Log"], "last_start", lambda self: "")
    for number in range(400):
        log.event(300, "refused", peer=number)
    gone = (path.read_text() + (tmp_path / "broker.log.1").read_text()).splitlines()
    assert not [line for line in gone if json.loads(line)["event"] == 100]
