"""The broker's Windows channel connection (templates/python/broker.py, WindowsChannelConnection),
its thread run here against a stand-in for the pipe: the connection's own bookkeeping is plain
Python, whatever Windows answers below it."""

from __future__ import annotations

import asyncio
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
