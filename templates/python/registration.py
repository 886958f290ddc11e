# ---- Behind the broker: this server's sign-in and its registration ----
# The broker holds http://NAME/ and sends each account's browser connections to the server that
# account registered. It proves itself to this server with a header carrying this run's secret,
# which it read from a file only this account and the broker can read; the secret never travels
# on the registration channel, on a command line or in a URL.

import hmac
import json
import socket
import threading
import time
import types

from jupyter_server.auth.identity import IdentityProvider, User

BROKER_HEADER = "X-Gen-Bundle-Broker"


class BrokerSignIn(IdentityProvider):
    """Signs in a request only when it carries the broker's header with this run's secret, or,
    for programs of this same account that talk to this server's own port (a script, an editor's
    Jupyter extension), Jupyter's own "Authorization: token <secret>" with the secret from the
    registration file. The broker strips that header and any token parameter, so a request through
    it is never token-authenticated: Jupyter's XSRF and Origin checks stay on for the browser.
    There is no login page and no cookie sign-in."""

    secret = ""

    def get_user(self, handler):
        sent = handler.request.headers.get(BROKER_HEADER, "")
        if sent and self.secret and hmac.compare_digest(sent.encode("ascii", "replace"), self.secret.encode("ascii")):
            return User(username=NAME)
        sent = handler.request.headers.get("Authorization", "")
        if sent.startswith("token ") and self.secret and hmac.compare_digest(
                sent[6:].strip().encode("ascii", "replace"), self.secret.encode("ascii")):
            handler._token_authenticated = True  # as Jupyter marks its own token sign-in: an API client
            return User(username=NAME)
        return None

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
    delay = 1
    while True:
        try:
            path = write_registration_file(port, secret)
            with connect_to_broker() as channel:
                channel.write(json.dumps({"file": str(path)}).encode("ascii") + b"\n")
                answer = channel.readline()
                if json.loads(answer or b"{}").get("registered") is True:
                    sys.stderr.write("gen-bundle: registered with the broker at " + URL + "\n")
                    delay = 1
                    while channel.read(1):  # the broker writes nothing more; EOF: it restarted
                        pass
                else:
                    sys.stderr.write("gen-bundle: the broker refused this server's registration; see its log\n")
        except OSError as exc:
            sys.stderr.write("gen-bundle: cannot reach the broker (%s); trying again in %d s\n" % (exc, delay))
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


def behind_broker(c):
    """The settings for a server behind the broker."""
    BrokerSignIn.secret = secrets.token_urlsafe(32)
    c.ServerApp.identity_provider_class = BrokerSignIn
    c.IdentityProvider.token = ""  # Jupyter would write its token into every page; the secret is checked above
    c.ServerApp.ip = "127.0.0.1"
    c.ServerApp.port = 0  # the OS picks a free port
    c.ServerApp.port_retries = 0
    c.ServerApp.local_hostnames = [NAME]
    c.ServerApp.custom_display_url = URL
    c.ServerApp.jpserver_extensions.update({"gen_bundle_broker": True})


# ---- Windows: the registration file's DACL and the broker's pipe ----

def broker_task_sid(task=None):
    """The SID Task Scheduler gives the broker's task (ProcessTokenSidType Unrestricted), "NT TASK\\NAME".

    Microsoft Learn ("Task Security Hardening") says the task SID is derived from the full task path
    with each "\\" turned into "-" (\\Microsoft\\Windows\\RAC\\RACTask: Microsoft-Windows-RAC-RACTask) and
    the group name is "NT TASK\\<that name>". How it is derived is not documented; computed as a service
    SID is (S-1-5-80: SHA-1 of the upper-cased name in UTF-16LE, read as five little-endian DWORDs), with
    87 for 80, it gives the SIDs two published `schtasks /showsid` outputs show: "\\open notepad" ->
    S-1-5-87-907618518-2201690017-3345919478-1888295809-4191631242 (jmbarbone/rschtasks, README.md) and
    a task \\A\\B in Chinese (A = U+5907 U+4EFD, B = U+542F U+52A8 U+5907 U+4EFD; "user name A-B") ->
    S-1-5-87-782916017-575545879-3398072960-2725436614-2063171235 (a schtasks note in the search corpus).
    The leading "\\" is dropped. Python's upper() is Windows' only for ASCII: gen-bundle's task paths are ASCII."""
    import hashlib
    import struct

    name = (task or BROKER_TASK).lstrip("\\").replace("\\", "-")
    digest = hashlib.sha1(name.upper().encode("utf-16-le")).digest()
    return "S-1-5-87-" + "-".join(str(part) for part in struct.unpack("<5I", digest))


def restrict_to_broker(path):
    """The file's DACL, protected from inheritance: its owner (this account, who created it: the broker
    checks the owner is the account that registers) and SYSTEM full control, the broker's task SID read."""
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
    sddl = "D:P(A;;FA;;;OW)(A;;FA;;;SY)(A;;FR;;;%s)" % broker_task_sid()  # OW: OWNER RIGHTS, the file's owner
    descriptor = ctypes.c_void_p()
    if not advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl, 1, ctypes.byref(descriptor), None):
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        present, dacl, defaulted = wintypes.BOOL(), ctypes.c_void_p(), wintypes.BOOL()
        if not advapi32.GetSecurityDescriptorDacl(descriptor, ctypes.byref(present), ctypes.byref(dacl),
                                                  ctypes.byref(defaulted)):
            raise ctypes.WinError(ctypes.get_last_error())
        error = advapi32.SetNamedSecurityInfoW(str(path), 1, 0x4 | 0x80000000, None, None, dacl, None)
        if error:  # SE_FILE_OBJECT; DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION
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
    handle = kernel32.CreateFileW("\\\\.\\pipe\\" + name, 0x80000000 | 0x2, 0, None, 3,  # GENERIC_READ | FILE_WRITE_DATA
                                  0x00100000 | 0x00010000, None)  # OPEN_EXISTING; SECURITY_SQOS_PRESENT | _IDENTIFICATION
    if handle in (None, ctypes.c_void_p(-1).value):
        raise ctypes.WinError(ctypes.get_last_error())

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
                if error == 109:  # ERROR_BROKEN_PIPE: the broker closed its end
                    return b""
                raise ctypes.WinError(error)
            return buffer.raw[:done.value]

        def readline(self):
            line = b""
            while not line.endswith(b"\n") and len(line) < 4096:
                byte = self.read(1)
                if not byte:
                    break
                line += byte
            return line

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            kernel32.CloseHandle(handle)

    return Pipe()
