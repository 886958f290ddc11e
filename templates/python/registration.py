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
