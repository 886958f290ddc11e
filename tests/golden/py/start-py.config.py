r"""gen-bundle 0.3.18: settings of the notebook server for http://py/

start-py.launcher.py passes this file to the server with --config. It runs inside
the server, as the user who logged on, and reads and writes only that user's files.

The server listens on 127.0.0.1 at a port Windows picks, and registers with the broker
(py.broker.py, the boot task \gen-bundle\py-broker), which holds 127.0.0.13:80
and sends this user's browser connections to http://py/ here. It registers over the pipe
\\.\pipe\gen-bundle-py and keeps that connection open for as long as it runs; after the
broker restarts, it registers again.

  %LOCALAPPDATA%\gen-bundle\py\registration.json
      this run's port and secret (256 random bits, made anew at every start). Only this
      user, SYSTEM and the broker's task SID (S-1-5-87-3373994586-280542677-2501101745-953426644-57861312) can read it. The
      broker reads the secret from here and sends it with each request it forwards; the secret
      never travels on the pipe, on a command line or in a URL. Programs of this same user
      (an editor's Jupyter extension, a script) may read it and send
      "Authorization: token <secret>" to http://127.0.0.1:<port>/ directly.
  %LOCALAPPDATA%\gen-bundle\py\runtime
      Jupyter's runtime files (its jpserver-*.json, kernels' connection files), in the local
      profile: the default, %APPDATA%\jupyter\runtime, roams to the profile server.
  %LOCALAPPDATA%\gen-bundle\py\stable
      written once the server has run for 60 s; the launcher then starts
      its restart back-off from 5 s again.
  %LOCALAPPDATA%\gen-bundle\py\server.log, server.1.log
      the server's output (and its kernels'): the launcher opens server.log, and this
      file keeps it under 1048576 bytes for as long as the server runs; the
      older part moves to server.1.log.

Sign-in: a request gets in only with the broker's header carrying this run's secret, or with
the secret in an Authorization header. There is no token in any URL, no password and no
login page. Jupyter's XSRF and Origin checks stay on for the browser.
Each start also gets a new cookie secret. gen-bundle 0.1.0's per-user Start-menu entry, and
0.2's token and server.pid files, are deleted.

It also ends the server, with exit code 86, when the launcher that started it
is gone (the task was stopped), so that no server is left running on its own.
"""

# ==== This bundle's values, rendered by gen-bundle from its inputs. ====
STATE_BASE = 'LOCALAPPDATA'  # this user's state: %STATE_BASE%\STATE_PATH
STATE_PATH = 'gen-bundle\\py'
NAME = 'py'
URL = 'http://py/'
AUTH = 'token'
# The files of this user's state folder (the launcher and install.ps1 name them too).
SERVER_LOG_FILE = 'server.log'
SERVER_LOG_OLD_FILE = 'server.1.log'
REGISTRATION_FILE = 'registration.json'
STABLE_FILE = 'stable'
RUNTIME_FOLDER = 'runtime'
STABLE_AFTER = 60
SERVER_LOG_BYTES = 1048576
LAUNCHER_GONE_EXIT = 86
# How many processes up the parent chain to watch: the launcher's python.exe and what runs it (cmd.exe,
# and with --window hidden conhost.exe too, the task's own process, which Task Scheduler ends when the
# task is stopped); with --env also the venv's Scripts\python.exe above each python.exe.
WATCH_DEPTH = 3
LEGACY_SHORTCUT_NAME = 'py notebook.url'
BROKER_CHANNEL = 'gen-bundle-py'  # the broker's named pipe: \\.\pipe\BROKER_CHANNEL
BROKER_SID = 'S-1-5-87-3373994586-280542677-2501101745-953426644-57861312'  # the broker task's own SID: it may read the registration file

# ==== Below this line the file is the same in every bundle: gen-bundle's templates/python/registration.py,
# ==== templates/python/watch.py, then templates/python/server_config.py. The values they use are the bundle's, above.

# ---- Behind the broker: this server's sign-in and its registration ----
# The broker holds http://NAME/ and sends each account's browser connections to the server that
# account registered. It proves itself to this server with a header carrying this run's secret,
# which it read from a file only this account and the broker can read; the secret never travels
# on the registration channel, on a command line or in a URL.

import hmac
import json
import os
import secrets
import socket
import sys
import threading
import time
import types

from jupyter_server.auth.identity import IdentityProvider, User

BROKER_HEADER = "X-Gen-Bundle-Broker"  # broker.py's REQUEST_SECRET_HEADER: tests/test_broker.py fails if they differ


class BrokerSignIn(IdentityProvider):
    """Signs in a request only when it carries the broker's header with this run's secret, or,
    for programs of this same account that talk to this server's own port (a script, an editor's
    Jupyter extension), Jupyter's own "Authorization: token <secret>" with the secret from the
    registration file. The broker strips that header and any token parameter, so a request through
    it is never token-authenticated: Jupyter's XSRF and Origin checks stay on for the browser.
    There is no login page and no cookie sign-in. ``anyone`` (the bundle's --auth none) signs in
    every request that reaches the server: any local account that finds its port."""

    secret = ""
    anyone = False

    def get_user(self, handler):
        sent = handler.request.headers.get(BROKER_HEADER, "")
        if sent and self.secret and hmac.compare_digest(sent.encode("ascii", "replace"), self.secret.encode("ascii")):
            return User(username=NAME)
        sent = handler.request.headers.get("Authorization", "")
        if sent.startswith("token ") and self.secret and hmac.compare_digest(
                sent[6:].strip().encode("ascii", "replace"), self.secret.encode("ascii")):
            handler._token_authenticated = True  # as Jupyter marks its own token sign-in: an API client
            return User(username=NAME)
        return User(username=NAME) if self.anyone else None

    @property
    def login_available(self):
        return False

    @property
    def logout_available(self):
        return False


def write_registration_file(port, secret):
    """{port, secret}, readable by this account and the broker only; replaced whole."""
    path = STATE / REGISTRATION_FILE
    temporary = path.with_name(REGISTRATION_FILE + ".new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        if sys.platform == "win32":
            restrict_to_broker(temporary)  # before the secret is in it
        json.dump({"port": port, "secret": secret}, handle)
    os.replace(temporary, path)
    return path


def connect_to_broker():
    if sys.platform == "win32":
        return open_broker_pipe(BROKER_CHANNEL)
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    channel.connect(BROKER_CHANNEL)
    return channel.makefile("rwb", buffering=0)


def stay_registered(port, secret):
    """Registers with the broker and keeps the connection open for as long as this server runs;
    after the broker restarts, registers again."""
    delay, quick = 1, 5
    while True:
        answer = b""
        try:
            path = write_registration_file(port, secret)
            with connect_to_broker() as channel:
                channel.write(json.dumps({"file": str(path)}).encode("ascii") + b"\n")
                answer = channel.readline()
                if json.loads(answer or b"{}").get("registered") is True:
                    sys.stderr.write("gen-bundle: registered with the broker at " + URL + "\n")
                    delay, quick = 1, 5
                    while channel.read(1):  # the broker writes nothing more; EOF: it restarted
                        pass
                elif answer:
                    sys.stderr.write("gen-bundle: the broker refused this server's registration; see its log\n")
        except (OSError, ValueError) as exc:
            sys.stderr.write("gen-bundle: cannot reach the broker (%s); trying again\n" % exc)
        if not answer and quick:
            # Closed before any answer: a worker restarting, or (Windows) every pipe instance busy.
            # Again at once, a few times.
            quick -= 1
            time.sleep(0.2)
            continue
        time.sleep(delay)
        delay = min(delay * 2, 30)


def load_broker_extension(serverapp):
    """Runs once the server's event loop runs, that is once it listens: the port is known."""
    from tornado.ioloop import IOLoop

    def start():
        thread = threading.Thread(target=stay_registered, args=(serverapp.port, BrokerSignIn.secret),
                                  name="gen-bundle-broker", daemon=True)
        thread.start()

    IOLoop.current().add_callback(start)


# A server extension defined here, not installed: Jupyter imports it by name from sys.modules.
_extension = types.ModuleType("gen_bundle_broker")
_extension._jupyter_server_extension_points = lambda: [{"module": "gen_bundle_broker"}]
_extension._load_jupyter_server_extension = load_broker_extension
sys.modules["gen_bundle_broker"] = _extension


def behind_broker(c, anyone=False):
    """The settings for a server behind the broker."""
    BrokerSignIn.secret = secrets.token_urlsafe(32)
    BrokerSignIn.anyone = anyone
    c.ServerApp.identity_provider_class = BrokerSignIn
    c.IdentityProvider.token = ""  # Jupyter would write its token into every page; the secret is checked above
    c.ServerApp.ip = "127.0.0.1"
    c.ServerApp.port = 0  # the OS picks a free port
    c.ServerApp.port_retries = 0
    c.ServerApp.local_hostnames = [NAME]
    c.ServerApp.custom_display_url = URL
    c.ServerApp.jpserver_extensions.update({"gen_bundle_broker": True})


# ---- Windows: the registration file's DACL and the broker's pipe ----

# BROKER_SID, the broker task's SID (ProcessTokenSidType Unrestricted), is rendered with the values: the
# generator computes it (generator/layout.py, task_sid).

def restrict_to_broker(path):
    """The file's owner and DACL, protected from inheritance. The owner is this account, set here: the
    broker checks it is the account that registers, and a file made by an elevated administrator's
    process would otherwise be owned by the Administrators group (its token's default owner; UAC off,
    as on many Session Hosts). Its owner and SYSTEM full control, the broker's task SID read."""
    import ctypes
    from ctypes import wintypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    pointer = ctypes.POINTER(ctypes.c_void_p)
    advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.restype = wintypes.BOOL
    advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.argtypes = [
        wintypes.LPCWSTR, wintypes.DWORD, pointer, ctypes.POINTER(wintypes.ULONG)]
    advapi32.GetSecurityDescriptorDacl.restype = wintypes.BOOL
    advapi32.GetSecurityDescriptorDacl.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(wintypes.BOOL), pointer, ctypes.POINTER(wintypes.BOOL)]
    advapi32.SetNamedSecurityInfoW.restype = wintypes.DWORD
    advapi32.SetNamedSecurityInfoW.argtypes = [wintypes.LPWSTR, ctypes.c_int, wintypes.DWORD] + [ctypes.c_void_p] * 4
    kernel32.LocalFree.restype = wintypes.HANDLE
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.GetCurrentProcess.argtypes = []
    kernel32.CloseHandle.restype = wintypes.BOOL
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    advapi32.OpenProcessToken.restype = wintypes.BOOL
    advapi32.OpenProcessToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
    advapi32.GetTokenInformation.restype = wintypes.BOOL
    advapi32.GetTokenInformation.argtypes = [
        wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD)]
    token = wintypes.HANDLE()
    if not advapi32.OpenProcessToken(kernel32.GetCurrentProcess(), 0x0008, ctypes.byref(token)):  # TOKEN_QUERY
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        user = ctypes.create_string_buffer(512)
        needed = wintypes.DWORD()
        if not advapi32.GetTokenInformation(token, 1, user, 512, ctypes.byref(needed)):  # TokenUser
            raise ctypes.WinError(ctypes.get_last_error())
    finally:
        kernel32.CloseHandle(token)
    owner = ctypes.c_void_p.from_buffer(user).value  # TOKEN_USER.User.Sid: a user may always own what it makes
    sddl = "D:P(A;;FA;;;OW)(A;;FA;;;SY)(A;;FR;;;%s)" % BROKER_SID  # OW: OWNER RIGHTS, the file's owner
    descriptor = ctypes.c_void_p()
    if not advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl, 1, ctypes.byref(descriptor), None):
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        present, dacl, defaulted = wintypes.BOOL(), ctypes.c_void_p(), wintypes.BOOL()
        if not advapi32.GetSecurityDescriptorDacl(descriptor, ctypes.byref(present), ctypes.byref(dacl),
                                                  ctypes.byref(defaulted)):
            raise ctypes.WinError(ctypes.get_last_error())
        error = advapi32.SetNamedSecurityInfoW(str(path), 1, 0x1 | 0x4 | 0x80000000, owner, None, dacl, None)
        if error:  # SE_FILE_OBJECT; OWNER_, DACL_ and PROTECTED_DACL_SECURITY_INFORMATION
            raise ctypes.WinError(error)
    finally:
        kernel32.LocalFree(descriptor)


def open_broker_pipe(name):
    """The broker's pipe, as a file-like object (write, readline, read, with). The broker may identify
    this account but not act as it (SECURITY_IDENTIFICATION). GENERIC_READ | FILE_WRITE_DATA, not
    GENERIC_WRITE: that includes FILE_CREATE_PIPE_INSTANCE, which the pipe's DACL grants only the broker,
    so it would be refused. The client end starts in byte read mode (PIPE_READMODE_BYTE) and keeps it:
    SetNamedPipeHandleState would need FILE_WRITE_ATTRIBUTES."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateFileW.restype = wintypes.HANDLE
    kernel32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p,
                                     wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
    kernel32.ReadFile.restype = wintypes.BOOL
    kernel32.ReadFile.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD),
                                  ctypes.c_void_p]
    kernel32.WriteFile.restype = wintypes.BOOL
    kernel32.WriteFile.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD),
                                   ctypes.c_void_p]
    kernel32.CloseHandle.restype = wintypes.BOOL
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    kernel32.PeekNamedPipe.restype = wintypes.BOOL
    kernel32.PeekNamedPipe.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD] + [
        ctypes.POINTER(wintypes.DWORD)] * 3
    kernel32.LocalFree.restype = wintypes.HANDLE
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    advapi32.GetSecurityInfo.restype = wintypes.DWORD
    advapi32.GetSecurityInfo.argtypes = [wintypes.HANDLE, ctypes.c_int, wintypes.DWORD] + [
        ctypes.POINTER(ctypes.c_void_p)] * 5
    advapi32.ConvertSidToStringSidW.restype = wintypes.BOOL
    advapi32.ConvertSidToStringSidW.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    handle = kernel32.CreateFileW("\\\\.\\pipe\\" + name, 0x80000000 | 0x2, 0, None, 3,  # GENERIC_READ | FILE_WRITE_DATA
                                  0x00100000 | 0x00010000, None)  # OPEN_EXISTING; SECURITY_SQOS_PRESENT | _IDENTIFICATION
    if handle in (None, ctypes.c_void_p(-1).value):
        raise ctypes.WinError(ctypes.get_last_error())
    # Nothing is sent to a pipe another process made first (a squatter would answer "registered"): its owner,
    # read with GetSecurityInfo (Microsoft Learn, "Securable Objects": the functions for named pipes; GENERIC_READ
    # includes READ_CONTROL), must be LOCAL SERVICE or the broker's task SID. The owner of a new object is its
    # creator's token's default owner (Microsoft Learn, "Owner of a New Object"); which of the two the task's
    # token has is not documented. GetNamedPipeServerProcessId would give a pid, but no account can check a
    # LOCAL SERVICE task's process. Left open: another LOCAL SERVICE service that made the pipe before the broker.
    owner, descriptor, text = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    error = advapi32.GetSecurityInfo(handle, 6, 0x1, ctypes.byref(owner), None, None, None,  # SE_KERNEL_OBJECT, OWNER_
                                     ctypes.byref(descriptor))  # SECURITY_INFORMATION
    if not error and not advapi32.ConvertSidToStringSidW(owner, ctypes.byref(text)):
        error = ctypes.get_last_error()
    sid = ctypes.wstring_at(text.value) if text.value else None
    kernel32.LocalFree(text)
    kernel32.LocalFree(descriptor)
    if error or sid not in ("S-1-5-19", BROKER_SID):
        kernel32.CloseHandle(handle)
        raise ctypes.WinError(error) if error else PermissionError("the pipe is owned by %s, not the broker" % sid)

    class Pipe:
        def write(self, data):
            done = wintypes.DWORD()
            while data:
                if not kernel32.WriteFile(handle, data, len(data), ctypes.byref(done), None):
                    raise ctypes.WinError(ctypes.get_last_error())
                data = data[done.value:]

        def read(self, size):
            buffer, done = ctypes.create_string_buffer(size), wintypes.DWORD()
            if not kernel32.ReadFile(handle, buffer, size, ctypes.byref(done), None):
                error = ctypes.get_last_error()
                if error in (109, 233):  # ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED: the broker closed its end
                    return b""
                raise ctypes.WinError(error)
            return buffer.raw[:done.value]

        def readline(self, seconds=15):
            """The broker's answer, or TimeoutError (an OSError: stay_registered tries again) after ``seconds``.
            PeekNamedPipe says what waits without blocking (Microsoft Learn, PeekNamedPipe); a ReadFile of a
            byte that is there does not block."""
            line, deadline, waiting = b"", time.monotonic() + seconds, wintypes.DWORD()
            while not line.endswith(b"\n") and len(line) < 4096:
                if not kernel32.PeekNamedPipe(handle, None, 0, None, ctypes.byref(waiting), None):
                    raise ctypes.WinError(ctypes.get_last_error())  # the broker closed its end
                if not waiting.value:
                    if time.monotonic() > deadline:
                        raise TimeoutError("no answer from the broker in %d s" % seconds)
                    time.sleep(0.05)
                    continue
                line += self.read(1)
            return line

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            kernel32.CloseHandle(handle)

    return Pipe()

# ---- The watch on the processes that run this one: the launcher and the task's own ----
# When the task is stopped, Task Scheduler ends the process it started (conhost.exe or cmd.exe),
# not the programs that process started: each of them watches the processes above it and ends
# when one of them has ended. The part imports what it uses where it uses it: it is pasted into
# files whose other parts import their own.


def ancestors_windows(depth: int) -> "list[int] | None":
    """Process ids of the parent, grandparent... (Toolhelp snapshot), as far as each process's
    entry names its parent: a parent that has ended is named by its child's entry, and has no
    entry of its own. None when Windows gives no snapshot."""
    import ctypes
    import os
    from ctypes import wintypes

    class Entry(ctypes.Structure):
        _fields_ = [
            ("dwSize", wintypes.DWORD),
            ("cntUsage", wintypes.DWORD),
            ("th32ProcessID", wintypes.DWORD),
            ("th32DefaultHeapID", ctypes.c_size_t),
            ("th32ModuleID", wintypes.DWORD),
            ("cntThreads", wintypes.DWORD),
            ("th32ParentProcessID", wintypes.DWORD),
            ("pcPriClassBase", ctypes.c_long),
            ("dwFlags", wintypes.DWORD),
            ("szExeFile", ctypes.c_wchar * 260),
        ]

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    kernel32.CreateToolhelp32Snapshot.argtypes = [wintypes.DWORD, wintypes.DWORD]
    kernel32.Process32FirstW.argtypes = [wintypes.HANDLE, ctypes.c_void_p]
    kernel32.Process32NextW.argtypes = [wintypes.HANDLE, ctypes.c_void_p]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    snapshot = kernel32.CreateToolhelp32Snapshot(0x00000002, 0)  # TH32CS_SNAPPROCESS
    if snapshot in (None, ctypes.c_void_p(-1).value):  # INVALID_HANDLE_VALUE
        return None
    parents = {}
    entry = Entry()
    entry.dwSize = ctypes.sizeof(Entry)
    more = kernel32.Process32FirstW(snapshot, ctypes.byref(entry))
    while more:
        parents[entry.th32ProcessID] = entry.th32ParentProcessID
        more = kernel32.Process32NextW(snapshot, ctypes.byref(entry))
    kernel32.CloseHandle(snapshot)
    chain, pid = [], os.getpid()
    for _ in range(depth):
        pid = parents.get(pid, 0)
        if not pid:
            break
        chain.append(pid)
    return chain


def wait_for_ancestors(depth: int) -> bool:
    """Wait until one of the ``depth`` processes above this one has ended: True then, and at once
    when one had ended before the watch began (a task stopped while this process started), or may
    not be opened (its id was given to another account's process). False at once when Windows
    gives no verdict (no snapshot, or the wait failed), so that what runs keeps running rather
    than ending for a fault of the watch itself."""
    import os
    import sys

    if sys.platform == "win32":
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.GetCurrentProcess.restype = wintypes.HANDLE
        kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
        kernel32.WaitForMultipleObjects.restype = wintypes.DWORD  # WAIT_FAILED is 0xFFFFFFFF, not -1
        kernel32.WaitForMultipleObjects.argtypes = [wintypes.DWORD, ctypes.c_void_p, wintypes.BOOL, wintypes.DWORD]
        kernel32.GetProcessTimes.argtypes = [wintypes.HANDLE] + [ctypes.POINTER(wintypes.FILETIME)] * 4

        def created(handle) -> int:
            times = [wintypes.FILETIME() for _ in range(4)]
            if not kernel32.GetProcessTimes(handle, *[ctypes.byref(t) for t in times]):
                return 0
            return (times[0].dwHighDateTime << 32) | times[0].dwLowDateTime

        handles = []
        child = created(kernel32.GetCurrentProcess())
        chain = ancestors_windows(depth)
        if chain is None:
            return False
        if len(chain) < depth:
            return True  # a parent had already ended: it is not in the snapshot
        for pid in chain:
            # SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION
            handle = kernel32.OpenProcess(0x00100000 | 0x1000, False, pid)
            if not handle:
                # No such process any more (87), or one this account may not open: every process
                # within depth is of the task's tree, this account's own, so its id now belongs
                # to a process of another account. Either way the parent has ended.
                return True
            born = created(handle)
            if not born or born > child:
                # The parent ended and its process id was given to a newer process.
                kernel32.CloseHandle(handle)
                return True
            handles.append(handle)
            child = born
        array = (wintypes.HANDLE * len(handles))(*handles)
        if kernel32.WaitForMultipleObjects(len(handles), array, False, 0xFFFFFFFF) >= len(handles):
            return False  # WAIT_FAILED: no verdict
    else:
        import time

        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(1)
    return True

# ---- The server's output, its watchdog, and the settings that apply the above ----

import atexit  # os, secrets, sys and threading: imported above, by the registration's and the watch's parts
from pathlib import Path

STATE = Path(os.environ[STATE_BASE], *STATE_PATH.split("\\"))
LEGACY_SHORTCUT = Path(os.environ["APPDATA"], "Microsoft", "Windows", "Start Menu", "Programs", LEGACY_SHORTCUT_NAME)

def remove_legacy_files() -> None:
    """gen-bundle 0.1.0 kept the secret in a per-user .url in the roaming profile; 0.2 kept each run's
    secret in "token" and the server's process id in "server.pid", which nothing reads any more."""
    try:
        if LEGACY_SHORTCUT.read_bytes().startswith(("[InternetShortcut]\r\nURL=" + URL).encode("ascii")):
            LEGACY_SHORTCUT.unlink()
    except OSError:
        pass
    for name in ("token", "server.pid"):
        try:
            (STATE / name).unlink()
        except OSError:
            pass


def mark_stable() -> None:
    (STATE / STABLE_FILE).write_text("the server ran for %d s\n" % STABLE_AFTER, encoding="ascii")


class CappedOutput:
    """The server's standard output and error, kept under SERVER_LOG_BYTES.

    The launcher opens server.log for writing, shared for reading only, and hands
    that handle to the server as its output: while the server runs no other handle
    may write, rename or truncate the file. So from here on the output goes through
    a pipe, and a thread writes it through that handle; when the next write
    would pass the cap, the file's bytes are copied to server.1.log and the file
    starts again from empty. Kernels inherit the pipe, so their output is capped too.
    """

    def __init__(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.target = os.dup(1)  # the handle to server.log the launcher gave; not inherited
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self.read_end = read_end
        self.thread = threading.Thread(target=self.pump, name="gen-bundle-output", daemon=True)
        self.thread.start()

    def pump(self) -> None:
        while True:
            data = os.read(self.read_end, 65536)
            if not data:
                return
            try:
                if os.fstat(self.target).st_size + len(data) > SERVER_LOG_BYTES:
                    self.rotate()
                os.write(self.target, data)
            except OSError:
                pass  # disk full, file gone: drop this output, but keep the pipe drained so the server never blocks

    def rotate(self) -> None:
        try:
            previous = (STATE / SERVER_LOG_FILE).read_bytes()
            (STATE / (SERVER_LOG_OLD_FILE + ".new")).write_bytes(previous)
            os.replace(STATE / (SERVER_LOG_OLD_FILE + ".new"), STATE / SERVER_LOG_OLD_FILE)
        except OSError:
            pass  # the older part is lost; the cap still holds
        os.ftruncate(self.target, 0)
        os.lseek(self.target, 0, os.SEEK_SET)

    def finish(self) -> None:
        """Write out what is still in the pipe: the last lines say why the server ended."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        self.thread.join(2)  # a kernel that still runs keeps the pipe open: do not wait for it


def watch_launcher() -> None:
    """End the server when the launcher (or what runs it) has gone."""
    if not wait_for_ancestors(WATCH_DEPTH):
        return
    sys.stderr.write("gen-bundle: the launcher is gone; stopping the server\n")
    OUTPUT.finish()
    os._exit(LAUNCHER_GONE_EXIT)


STATE.mkdir(parents=True, exist_ok=True)
OUTPUT = CappedOutput()
atexit.register(OUTPUT.finish)
threading.Thread(target=watch_launcher, name="gen-bundle-watch", daemon=True).start()
stable_timer = threading.Timer(STABLE_AFTER, mark_stable)
stable_timer.daemon = True
stable_timer.start()
os.environ["JUPYTER_RUNTIME_DIR"] = str(STATE / RUNTIME_FOLDER)  # read by the server after this file, and by kernels
c = get_config()  # noqa: F821 - Jupyter defines get_config() for the files it loads
c.ServerApp.cookie_secret = secrets.token_bytes(32)
behind_broker(c, anyone=AUTH == "none")
if AUTH == "none":
    sys.stderr.write("gen-bundle: WARNING: sign-in is OFF (--auth none): any account of this PC that finds this "
                     "server's port can run code as this user\n")
remove_legacy_files()
