# gen-bundle 0.3.18: the broker of http://py/. install.ps1 puts this file at
# %ProgramFiles%\gen-bundle\py\py.broker.py, and the boot task \gen-bundle\py-broker (py.broker.task.xml)
# runs it as LOCAL SERVICE, its values on its command line (the task's arguments).
# ==== Below this line the file is the same in every bundle: gen-bundle's templates/python/broker.py.
"""gen-bundle's broker: http://NAME/ for every account of this PC, each to its own server.

Why it exists: a loopback address belongs to the first process that binds it, and any
account can bind one. So one process, started at boot by its own scheduled task as LOCAL
SERVICE, holds the bundle's address for as long as Windows runs, and every account's
notebook server registers behind it. No token, cookie or password is asked of anyone: the
operating system says which account (Windows: which session) owns the other end of each
browser connection, and the broker sends that connection to the server registered by that
account, or answers with its own page.

Two processes:
  supervisor  binds IP:PORT (exclusively) and the registration channel once, and never
              lets go of them: it hands both to a worker and starts a new worker whenever
              one ends. A restart of the worker never frees the address.
  worker      the HTTP proxy (tornado, which comes with notebook) and the registry.

Registration: each account's server connects to the channel (Windows: a named pipe whose
first instance the supervisor created; POSIX: a Unix socket in a folder only the broker can
write), and the OS tells the broker who connected (ImpersonateNamedPipeClient / SO_PEERCRED).
The secret never travels on the channel: the message names a file that only the server's
account and the broker can read; the broker checks the file's owner is the account that
connected, and that the process listening on 127.0.0.1 at the file's port is that account's
(Windows: the registering process itself). A registration lasts exactly as long as the
server keeps its connection open.

Run: python -I broker.py serve --ip IP --port PORT --name NAME --channel CHANNEL --log FILE
Standard library and tornado only.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

REQUEST_SECRET_HEADER = "X-Gen-Bundle-Broker"  # the only header the server's sign-in accepts
MAX_REGISTRATION_BYTES = 4096
MAX_SECRET_FILE_BYTES = 4096
MAX_CONNECTIONS_PER_ACCOUNT = 64  # browser connections, WebSockets included
# All accounts together. Each browser connection holds a second socket, to its server, and on Windows
# tornado watches every socket with select(), which takes 512 at most (its selector thread then dies).
MAX_CONNECTIONS = 220
# Connections whose owner Windows does not name, or that come from session 0 (a service, a proxy agent):
# they only ever get the broker's own page, so together they hold no more than this.
MAX_UNROUTED_CONNECTIONS = 4
QUIET_EVENTS_PER_MINUTE = 100  # refusals (requests, registrations) written to the log file each minute; the rest counted
MAX_HEADER_BYTES = 65536
MAX_BODY_BYTES = 512 * 1024 * 1024
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a WebSocket message; Jupyter's own server takes up to tornado's 10 MiB
IDLE_SECONDS = 300  # a connection that sends nothing, headers included, for this long is closed
BODY_SECONDS = 600
REGISTRATION_SECONDS = 10  # to send the one registration line, and for the broker to read its file
PENDING_PER_ACCOUNT = 2  # channel connections of one account not yet registered or refused
UNREAD_PER_SESSION = 8  # Windows: channel connections of one session whose line is not read yet
LOG_BYTES = 1024 * 1024
LISTENER_SCAN_SECONDS = 60
RESTART_FIRST, RESTART_CAP, RESTART_STABLE = 1, 60, 60
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Never forwarded in either direction (RFC 9110 7.6.1), with the headers the broker owns.
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Authorization", REQUEST_SECRET_HEADER, "Expect",
    "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip"))
WEBSOCKET_OWN = frozenset(("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                           "sec-websocket-accept", "sec-websocket-protocol"))

# Event IDs (Windows Application log, source gen-bundle-broker; the same numbers in the log file).
EVENT_STARTED, EVENT_BIND_FAILED, EVENT_OTHER_LISTENER, EVENT_WORKER_ENDED = 100, 101, 102, 103
EVENT_REGISTERED, EVENT_REGISTRATION_REFUSED, EVENT_REGISTRATION_ENDED = 200, 201, 202
EVENT_CONNECTION_REFUSED = 300
# Refusals any account can cause as often as it likes: rate-limited, so that a flood of them pushes no
# start (100) or registration (200) out of the log, which install.ps1 reads.
QUIET_EVENTS = (EVENT_REGISTRATION_REFUSED, EVENT_CONNECTION_REFUSED)


# ---- the log: decisions as typed data, never a secret ----

class Log:
    """One JSON object a line, kept under LOG_BYTES (the older half moves to FILE.1)."""

    def __init__(self, path, role):
        self.path = path
        self.role = role
        self.quiet_until = {}
        self.minute, self.quiet_written, self.quiet_dropped = None, 0, 0

    def event(self, event_id, message, **fields):
        if event_id in QUIET_EVENTS:
            # Refusals: at most QUIET_EVENTS_PER_MINUTE lines a minute, so that a flood of them cannot
            # push the registrations out of the file; how many were left out is written.
            minute = int(time.monotonic() // 60)
            if minute != self.minute:
                dropped, self.minute, self.quiet_written, self.quiet_dropped = self.quiet_dropped, minute, 0, 0
                if dropped:
                    self.event(EVENT_CONNECTION_REFUSED, "refusals not logged one by one", count=dropped)
            if self.quiet_written >= QUIET_EVENTS_PER_MINUTE:
                self.quiet_dropped += 1
                return
            self.quiet_written += 1
        now = time.time()
        # "utc" beside the local "time": install.ps1 compares a start's time with its process's
        # creation time, whatever the time zone or daylight saving time did since.
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)),
                  "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "pid": os.getpid(),
                  "role": self.role, "event": event_id, "message": message}
        record.update({key: clean(value) for key, value in fields.items()})
        line = json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n"
        try:
            if os.path.getsize(self.path) + len(line) > LOG_BYTES:
                # The last start (100) goes first into the new file, marked "carried" (no new start):
                # install.ps1 finds the broker's process by it, and refusals any account can cause
                # would otherwise push it out. Only once the old file is moved away.
                carried = self.last_start()
                os.replace(self.path, self.path + ".1")
                line = carried + line
        except OSError:
            pass
        try:
            # Administrators (and the broker) only: the folder install.ps1 makes says so on
            # Windows; here the file's own mode.
            with open(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a", encoding="ascii") as out:
                out.write(line)
        except OSError:
            sys.stderr.write(line)
        if event_id not in QUIET_EVENTS or self.quiet_until.get(event_id, 0) <= time.monotonic():
            # A refused request goes to the event log at most once a minute; the file has each one.
            self.quiet_until[event_id] = time.monotonic() + 60
            PLATFORM.report_event(event_id, message, record)

    def last_start(self):
        """The file's last start (100) line, marked "carried", or ''."""
        try:
            with open(self.path, "rb") as log:
                starts = [line for line in log.read().splitlines() if b'"event": %d,' % EVENT_STARTED in line]
            record = json.loads(starts[-1]) if starts else None
        except (OSError, ValueError):
            return ""
        if not isinstance(record, dict):
            return ""
        record["carried"] = True
        return json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n"


def clean(value):
    """What a request or a peer sent, as data: no control characters, no %, at most 200 characters."""
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [clean(item) for item in value]
    text = str(value)[:200]
    return "".join(c if (" " <= c < "\x7f" and c != "%") else "\\x%02x" % ord(c) if ord(c) < 256
                   else "\\u%04x" % ord(c) for c in text)


# ---- what the operating system says (POSIX here; Windows in WindowsPlatform) ----

class PosixPlatform:
    """Linux: sock_diag gives each socket's owning uid, SO_PEERCRED the channel's peer."""

    def bind_exclusive(self, ip, port):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # On Linux SO_REUSEADDR only lets this bind pass connections left in TIME_WAIT: while this
        # socket listens, no other socket can bind the port on this address or on 0.0.0.0.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((ip, port))
        listener.listen(128)
        listener.set_inheritable(True)
        return listener

    def open_channel(self, path):
        folder = os.path.dirname(path)
        info = os.lstat(folder)
        if info.st_uid != os.geteuid() or info.st_mode & 0o022 or not os.path.isdir(folder):
            raise OSError("the channel's folder %s must be a folder of this account that no other can write" % folder)
        try:
            if os.lstat(path).st_uid == os.geteuid():
                os.unlink(path)  # this broker's socket from before a restart of the machine's service
        except FileNotFoundError:
            pass
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        channel.bind(path)
        os.chmod(path, 0o666)  # every account may connect; SO_PEERCRED says who did
        channel.listen(64)
        channel.set_inheritable(True)
        return channel

    SERVICE_SESSION = None  # POSIX has no session 0 to refuse: the routing key is the uid

    def start_worker(self, argv, listener, channel):
        """The worker inherits both sockets; its standard input is its lifeline (EOF: the
        supervisor is gone, and the worker ends too)."""
        argv = argv + ["--listener-fd", str(listener.fileno()), "--channel-fd", str(channel.fileno())]
        return subprocess.Popen(argv, pass_fds=(listener.fileno(), channel.fileno()), stdin=subprocess.PIPE)

    def worker_sockets(self, options, lifeline):
        listener = socket.socket(fileno=options.listener_fd)
        channel = socket.socket(fileno=options.channel_fd)
        return listener, channel

    def accept_registrations(self, channel, on_connection, log):
        """Calls on_connection(PosixChannelConnection) on the event loop for each server that connects."""
        import tornado.netutil

        pending = {}  # account -> connections not yet registered or refused

        def accepted(sock, _address):
            try:
                connection = PosixChannelConnection(sock)
            except OSError as exc:
                log.event(EVENT_REGISTRATION_REFUSED, "the OS did not say who connected", reason=exc)
                sock.close()
                return
            if pending.get(connection.account, 0) >= PENDING_PER_ACCOUNT:
                log.event(EVENT_REGISTRATION_REFUSED, "too many registrations at once", account=connection.account)
                connection.close()
                return
            pending[connection.account] = pending.get(connection.account, 0) + 1

            def settled():
                pending[connection.account] -= 1
                if not pending[connection.account]:
                    del pending[connection.account]

            connection.settled = settled
            on_connection(connection)

        channel.setblocking(False)
        tornado.netutil.add_accept_handler(channel, accepted)

    def read_secret_file(self, path, account):
        """The registration file, read only when it is a regular file of ``account`` that no
        other account can read or write."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
        try:
            info = os.fstat(fd)
            import stat

            if not stat.S_ISREG(info.st_mode):
                raise PermissionError("not a regular file")
            if info.st_uid != account:
                raise PermissionError("owned by uid %d, not by the registering account (uid %d)" % (info.st_uid, account))
            if info.st_mode & 0o077:
                raise PermissionError("readable or writable by other accounts (mode %o)" % (info.st_mode & 0o777))
            return os.read(fd, MAX_SECRET_FILE_BYTES + 1)
        finally:
            os.close(fd)

    def sockets(self, local, remote, states, dump):
        """(state, local address, uid) of IPv4 TCP sockets, from the kernel's sock_diag (netlink,
        no privilege needed): the one socket local -> remote, or (dump) every socket in ``states`` on
        local's port. One request, however many sockets the machine has: /proc/net/tcp lists them
        all, TIME_WAIT included, and costs milliseconds once it holds a thousand.
        Layouts: linux/netlink.h (nlmsghdr), linux/inet_diag.h (inet_diag_req_v2, inet_diag_msg)."""
        import struct

        sockid = struct.pack("!HH16s16s", local[1], remote[1], socket.inet_aton(local[0]) + bytes(12),
                             socket.inet_aton(remote[0]) + bytes(12))
        sockid += struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface; INET_DIAG_NOCOOKIE
        body = struct.pack("=BBBxI", socket.AF_INET, socket.IPPROTO_TCP, 0, states) + sockid
        flags = 0x1 | (0x300 if dump else 0)  # NLM_F_REQUEST, NLM_F_DUMP
        found = []
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as diag:  # NETLINK_SOCK_DIAG
            diag.sendto(struct.pack("=IHHII", 16 + len(body), 20, flags, 1, 0) + body, (0, 0))  # SOCK_DIAG_BY_FAMILY
            while True:
                data, offset = diag.recv(65536), 0
                while offset < len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind in (2, 3):  # NLMSG_ERROR (none found), NLMSG_DONE
                        return found
                    found.append((data[offset + 17], socket.inet_ntoa(data[offset + 24:offset + 28]),
                                  struct.unpack_from("=I", data, offset + 80)[0]))
                    if not dump:
                        return found
                    offset += (length + 3) & ~3

    def connection_owner(self, client, server):
        """The routing key of the process that owns the client end of a browser connection."""
        for state, _local, uid in self.sockets(client, server, 1 << 1, dump=False):
            if state == 1:  # TCP_ESTABLISHED
                return uid
        return None

    def listening(self, port):
        """(address, uid) of every listener on ``port``."""
        rows = self.sockets(("0.0.0.0", port), ("0.0.0.0", 0), 1 << 10, dump=True)  # TCP_LISTEN
        return [(local, uid) for state, local, uid in rows if state == 10]

    def listener_matches(self, port, registration):
        """True when the process listening on 127.0.0.1:port is the registered account's."""
        owners = {uid for local, uid in self.listening(port) if local in ("127.0.0.1", "0.0.0.0")}
        return owners == {registration.account}

    def listeners(self, port, but=None):
        """Every listener on PORT (0.0.0.0 among them) but the one at address ``but``."""
        return sorted({"%s uid %d" % (local, uid) for local, uid in self.listening(port) if local != but})

    def session_user_matches(self, session, account):
        return True  # the routing key is the account itself

    def report_event(self, event_id, message, record):
        pass  # the log file is the record here


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value


class WindowsPlatform:
    """Windows: every answer from the OS, without privilege (the task runs as LOCAL SERVICE with
    SeChangeNotifyPrivilege only). GetExtendedTcpTable gives the process at each end of a TCP
    connection; NtQuerySystemInformation(SystemProcessInformation) each process's session and
    creation time (ProcessIdToSessionId would need a handle to another account's process, which
    LOCAL SERVICE cannot open); ImpersonateNamedPipeClient the account at the channel's other end."""

    SERVICE_SESSION = 0
    # The channel's DACL: SYSTEM and this broker's own task SID (%s: S-1-5-87-..., from its token) full control;
    # signed-in accounts FILE_GENERIC_READ | FILE_WRITE_DATA only. Not FILE_CREATE_PIPE_INSTANCE (0x4, the same
    # bit as FILE_APPEND_DATA, which GENERIC_WRITE includes): nobody else can serve an instance of the broker's
    # pipe (Microsoft Learn, "Named Pipe Security and Access Rights"). Not the owner (OW): it is the token's
    # default owner (Microsoft Learn, "Owner of a New Object"), maybe LOCAL SERVICE, which every LOCAL SERVICE
    # service is; and OWNER RIGHTS with READ_CONTROL only takes away the owner's implicit WRITE_DAC (Microsoft
    # Learn, "Well-known SIDs": S-1-3-4 makes the system ignore the owner's implicit READ_CONTROL and WRITE_DAC).
    PIPE_SDDL = "D:P(A;;FA;;;SY)(A;;FA;;;%s)(A;;0x12008b;;;AU)(A;;RC;;;OW)"
    CHANNEL_CONNECTIONS = 256  # at once; each has its own thread
    # nMaxInstances: PIPE_UNLIMITED_INSTANCES (255) means "limited only by system resources" (Microsoft Learn,
    # CreateNamedPipeW); the worker's CHANNEL_CONNECTIONS and the supervisor's one are 257, over any finite limit.
    PIPE_UNLIMITED_INSTANCES = 255
    WARNINGS = frozenset((EVENT_BIND_FAILED, EVENT_OTHER_LISTENER, EVENT_WORKER_ENDED, EVENT_REGISTRATION_REFUSED,
                          EVENT_CONNECTION_REFUSED))

    def __init__(self):
        self.pipe_security = self.event_source = self.job = self.readers = self.snapshot = None
        self.pending, self.lock = {}, threading.Lock()  # account -> its connections not yet answered
        self.unread, self.own_end = {}, None  # session -> its connections whose line is not read yet
        kernel32 = self.kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        advapi32 = self.advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
        ntdll = self.ntdll = ctypes.WinDLL("ntdll")
        iphlpapi = self.iphlpapi = ctypes.WinDLL("iphlpapi")
        wtsapi32 = self.wtsapi32 = ctypes.WinDLL("wtsapi32", use_last_error=True)
        pointer, dword = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(wintypes.DWORD)
        wtsapi32.WTSQuerySessionInformationW.restype = wintypes.BOOL
        wtsapi32.WTSQuerySessionInformationW.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.c_int, pointer, dword]
        wtsapi32.WTSFreeMemory.restype = None
        wtsapi32.WTSFreeMemory.argtypes = [ctypes.c_void_p]
        advapi32.LookupAccountNameW.restype = wintypes.BOOL
        advapi32.LookupAccountNameW.argtypes = [wintypes.LPCWSTR, wintypes.LPCWSTR, ctypes.c_void_p, dword,
                                                wintypes.LPWSTR, dword, dword]
        kernel32.CreateNamedPipeW.restype = wintypes.HANDLE
        kernel32.CreateNamedPipeW.argtypes = [wintypes.LPCWSTR] + [wintypes.DWORD] * 6 + [ctypes.c_void_p]
        kernel32.ConnectNamedPipe.restype = wintypes.BOOL
        kernel32.ConnectNamedPipe.argtypes = [wintypes.HANDLE, ctypes.c_void_p]
        kernel32.PeekNamedPipe.restype = wintypes.BOOL
        kernel32.PeekNamedPipe.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD, dword, dword, dword]
        kernel32.ReadFile.restype = wintypes.BOOL
        kernel32.ReadFile.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD, dword, ctypes.c_void_p]
        kernel32.WriteFile.restype = wintypes.BOOL
        kernel32.WriteFile.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD, dword, ctypes.c_void_p]
        kernel32.GetNamedPipeClientProcessId.restype = wintypes.BOOL
        kernel32.GetNamedPipeClientProcessId.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.ULONG)]
        kernel32.GetNamedPipeClientSessionId.restype = wintypes.BOOL
        kernel32.GetNamedPipeClientSessionId.argtypes = [wintypes.HANDLE, ctypes.POINTER(ctypes.c_ulong)]
        kernel32.CloseHandle.restype = wintypes.BOOL
        kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
        kernel32.GetCurrentThread.restype = wintypes.HANDLE
        kernel32.GetCurrentThread.argtypes = []
        kernel32.GetCurrentProcess.restype = wintypes.HANDLE
        kernel32.GetCurrentProcess.argtypes = []
        kernel32.CreateFileW.restype = wintypes.HANDLE
        kernel32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p,
                                         wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
        kernel32.GetFileType.restype = wintypes.DWORD
        kernel32.GetFileType.argtypes = [wintypes.HANDLE]
        kernel32.GetFileInformationByHandle.restype = wintypes.BOOL
        kernel32.GetFileInformationByHandle.argtypes = [wintypes.HANDLE, ctypes.c_void_p]
        kernel32.LocalFree.restype = wintypes.HANDLE
        kernel32.LocalFree.argtypes = [ctypes.c_void_p]
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        kernel32.CreateJobObjectW.restype = wintypes.HANDLE
        kernel32.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
        kernel32.SetInformationJobObject.restype = wintypes.BOOL
        kernel32.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD]
        kernel32.AssignProcessToJobObject.restype = wintypes.BOOL
        kernel32.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
        advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.restype = wintypes.BOOL
        advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.argtypes = [
            wintypes.LPCWSTR, wintypes.DWORD, pointer, ctypes.POINTER(wintypes.ULONG)]
        advapi32.ImpersonateNamedPipeClient.restype = wintypes.BOOL
        advapi32.ImpersonateNamedPipeClient.argtypes = [wintypes.HANDLE]
        advapi32.OpenThreadToken.restype = wintypes.BOOL
        advapi32.OpenThreadToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.BOOL, ctypes.POINTER(wintypes.HANDLE)]
        advapi32.OpenProcessToken.restype = wintypes.BOOL
        advapi32.OpenProcessToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
        advapi32.RevertToSelf.restype = wintypes.BOOL
        advapi32.RevertToSelf.argtypes = []
        advapi32.GetTokenInformation.restype = wintypes.BOOL
        advapi32.GetTokenInformation.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD, dword]
        advapi32.ConvertSidToStringSidW.restype = wintypes.BOOL
        advapi32.ConvertSidToStringSidW.argtypes = [ctypes.c_void_p, pointer]
        advapi32.GetSecurityInfo.restype = wintypes.DWORD
        advapi32.GetSecurityInfo.argtypes = [wintypes.HANDLE, ctypes.c_int, wintypes.DWORD] + [pointer] * 5
        advapi32.RegisterEventSourceW.restype = wintypes.HANDLE
        advapi32.RegisterEventSourceW.argtypes = [wintypes.LPCWSTR, wintypes.LPCWSTR]
        advapi32.ReportEventW.restype = wintypes.BOOL
        advapi32.ReportEventW.argtypes = [wintypes.HANDLE, wintypes.WORD, wintypes.WORD, wintypes.DWORD, ctypes.c_void_p,
                                          wintypes.WORD, wintypes.DWORD, ctypes.POINTER(wintypes.LPCWSTR), ctypes.c_void_p]
        ntdll.NtQuerySystemInformation.restype = ctypes.c_long  # NTSTATUS
        ntdll.NtQuerySystemInformation.argtypes = [ctypes.c_int, ctypes.c_void_p, wintypes.ULONG,
                                                   ctypes.POINTER(wintypes.ULONG)]
        iphlpapi.GetExtendedTcpTable.restype = wintypes.DWORD
        iphlpapi.GetExtendedTcpTable.argtypes = [ctypes.c_void_p, dword, wintypes.BOOL, wintypes.ULONG, ctypes.c_int,
                                                 wintypes.ULONG]

    @staticmethod
    def error(code=None):
        return ctypes.WinError(ctypes.get_last_error() if code is None else code)

    def bind_exclusive(self, ip, port):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # No socket of another account can then bind this address, not even with SO_REUSEADDR (Microsoft
        # Learn, "Using SO_REUSEADDR and SO_EXCLUSIVEADDRUSE"); and no SO_REUSEADDR here.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        listener.bind((ip, port))
        listener.listen(128)
        return listener

    def create_pipe(self, name, first=False):
        """One server instance of \\\\.\\pipe\\NAME, local clients only: the first (the supervisor's, which
        fails if another process already holds the name) or one more (the worker's, which needs
        FILE_CREATE_PIPE_INSTANCE on the first one's DACL: only SYSTEM and this task's SID have it)."""
        if self.pipe_security is None:
            if len(self.broker_sids()) != 1:
                raise OSError("not one task SID (S-1-5-87-*) in the broker's token: start it by its task")
            descriptor = ctypes.c_void_p()  # kept for the process's life
            if not self.advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    self.PIPE_SDDL % min(self.broker_sids()), 1, ctypes.byref(descriptor), None):  # SDDL_REVISION_1
                raise self.error()

            class SecurityAttributes(ctypes.Structure):
                _fields_ = [("nLength", wintypes.DWORD), ("lpSecurityDescriptor", ctypes.c_void_p),
                            ("bInheritHandle", wintypes.BOOL)]

            self.pipe_security = SecurityAttributes(ctypes.sizeof(SecurityAttributes), descriptor, False)
        path = name if name.startswith("\\\\.\\pipe\\") else "\\\\.\\pipe\\" + name
        handle = self.kernel32.CreateNamedPipeW(
            path, 0x3 | (0x00080000 if first else 0),  # PIPE_ACCESS_DUPLEX, FILE_FLAG_FIRST_PIPE_INSTANCE
            0x8, self.PIPE_UNLIMITED_INSTANCES, 4096, 4096, 0,  # byte, blocking, PIPE_REJECT_REMOTE_CLIENTS
            ctypes.byref(self.pipe_security))
        if handle in (None, INVALID_HANDLE_VALUE):
            raise self.error()
        return handle

    def open_channel(self, name):
        """The pipe's first instance: the supervisor keeps it, so the name stays the broker's while workers
        come and go; the worker serves instances of its own, by name. A client is given the oldest instance
        that listens (ReactOS's NPFS walks its instance list from the head; Microsoft does not say), so the
        supervisor connects this one at once to a client end it holds itself: it never listens, and every
        server reaches a worker's instance. A server's client that came first makes this fail
        (ERROR_PIPE_BUSY); the supervisor then tries again, holding the address."""
        handle = self.create_pipe(name, first=True)
        path = name if name.startswith("\\\\.\\pipe\\") else "\\\\.\\pipe\\" + name
        self.own_end = self.kernel32.CreateFileW(path, 0x80000000, 0, None, 3, 0, None)
        if self.own_end in (None, INVALID_HANDLE_VALUE):  # GENERIC_READ, OPEN_EXISTING
            error = self.error()
            self.kernel32.CloseHandle(handle)
            raise error
        return handle

    def start_worker(self, argv, listener, channel):
        """The listening socket goes to the worker as WSADuplicateSocket's bytes (socket.share) in one hex
        line on its standard input, which then stays open: its lifeline."""
        worker = subprocess.Popen(argv, stdin=subprocess.PIPE)
        self.contain(worker.pid)
        try:
            worker.stdin.write(listener.share(worker.pid).hex().encode("ascii") + b"\n")
            worker.stdin.flush()
        except OSError:
            worker.kill()  # it ends; the supervisor logs that and starts another
        return worker

    def contain(self, pid):
        """Best effort: the worker in a job with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, so that it ends with the
        supervisor's last handle to the job, even when the supervisor is killed."""
        if self.job is None:
            class Limits(ctypes.Structure):  # JOBOBJECT_EXTENDED_LIMIT_INFORMATION
                _fields_ = [("times", ctypes.c_int64 * 2), ("LimitFlags", wintypes.DWORD),
                            ("working_set", ctypes.c_size_t * 2), ("ActiveProcessLimit", wintypes.DWORD),
                            ("Affinity", ctypes.c_size_t), ("classes", wintypes.DWORD * 2),
                            ("io", ctypes.c_uint64 * 6), ("memory", ctypes.c_size_t * 4)]

            limits = Limits(LimitFlags=0x2000)  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            self.job = self.kernel32.CreateJobObjectW(None, None) or 0
            if self.job and not self.kernel32.SetInformationJobObject(
                    self.job, 9, ctypes.byref(limits), ctypes.sizeof(limits)):  # JobObjectExtendedLimitInformation
                self.kernel32.CloseHandle(self.job)
                self.job = 0
        process = self.kernel32.OpenProcess(0x0101, False, pid)  # PROCESS_SET_QUOTA | PROCESS_TERMINATE
        if process and self.job:
            self.kernel32.AssignProcessToJobObject(self.job, process)
        if process:
            self.kernel32.CloseHandle(process)

    def worker_sockets(self, options, lifeline):
        """The socket from the supervisor's hex line, read a byte at a time so that nothing after it is
        taken from end_with_supervisor, which reads the same descriptor afterwards."""
        line = b""
        while not line.endswith(b"\n"):
            byte = os.read(lifeline, 1)
            if not byte or len(line) > 8192:
                os._exit(0)  # the supervisor is gone
            line += byte
        return socket.fromshare(bytes.fromhex(line.decode("ascii"))), options.channel

    def accept_registrations(self, channel, on_connection, log):
        """A thread creates an instance of the pipe, waits for a client (ConnectNamedPipe), and gives
        the connection a thread of its own (WindowsChannelConnection), which hands it to the loop."""
        import asyncio
        import functools

        loop = asyncio.get_running_loop()
        slots = threading.BoundedSemaphore(self.CHANNEL_CONNECTIONS)

        def serve():
            while True:
                slots.acquire()
                try:
                    handle = self.create_pipe(channel)
                except OSError as exc:
                    slots.release()
                    loop.call_soon_threadsafe(functools.partial(
                        log.event, EVENT_REGISTRATION_REFUSED, "cannot open an instance of the channel", reason=exc))
                    time.sleep(5)
                    continue
                if self.kernel32.ConnectNamedPipe(handle, None) or ctypes.get_last_error() == 535:  # PIPE_CONNECTED
                    connection = WindowsChannelConnection(self, handle, loop)
                    threading.Thread(target=connection.run, args=(on_connection, log, slots.release),
                                     daemon=True).start()
                else:
                    self.kernel32.CloseHandle(handle)
                    slots.release()

        threading.Thread(target=serve, name="channel", daemon=True).start()

    def pipe_available(self, handle):
        """How many bytes wait in the pipe, or None once the client is gone. PeekNamedPipe never blocks:
        a ReadFile blocked on a synchronous handle would hold every other call on it."""
        available = wintypes.DWORD()
        if not self.kernel32.PeekNamedPipe(handle, None, 0, None, ctypes.byref(available), None):
            return None
        return available.value

    def read_handle(self, handle, size):
        buffer, done = ctypes.create_string_buffer(size), wintypes.DWORD()
        if not self.kernel32.ReadFile(handle, buffer, size, ctypes.byref(done), None):
            raise self.error()
        return buffer.raw[:done.value]

    def pipe_write(self, handle, data):
        done = wintypes.DWORD()
        while data:
            if not self.kernel32.WriteFile(handle, data, len(data), ctypes.byref(done), None):
                raise self.error()
            data = data[done.value:]

    def pipe_session(self, handle):
        """The session of a channel client, known before it sends anything (GetNamedPipeClientSessionId)."""
        session = ctypes.c_ulong()
        if not self.kernel32.GetNamedPipeClientSessionId(handle, ctypes.byref(session)):
            raise self.error()
        return session.value

    def pipe_close(self, handle):
        # One client per instance: no DisconnectNamedPipe, which would discard what the client has not read
        # yet (Microsoft Learn), the broker's answer among it; after CloseHandle the client still reads it.
        self.kernel32.CloseHandle(handle)

    def pipe_client(self, handle):
        """(SID, session, pid, creation time) of the client, once it has sent a message: impersonation
        works only after a read. The client allows identification only (SECURITY_IDENTIFICATION),
        which is enough to open its token with OpenAsSelf and read it; this thread reverts at once."""
        pid, token = wintypes.ULONG(), wintypes.HANDLE()
        if not self.kernel32.GetNamedPipeClientProcessId(handle, ctypes.byref(pid)):
            raise self.error()
        if not self.advapi32.ImpersonateNamedPipeClient(handle):
            raise self.error()
        try:
            opened = self.advapi32.OpenThreadToken(self.kernel32.GetCurrentThread(), 0x0008, True,  # TOKEN_QUERY
                                                   ctypes.byref(token))
            error = ctypes.get_last_error()
        finally:
            if not self.advapi32.RevertToSelf():
                os._exit(70)  # never go on in the client's name
        if not opened:
            raise self.error(error)
        try:
            user = self.token_information(token, 1)  # TokenUser: TOKEN_USER, the SID's address first; kept alive
            account = self.sid_string(ctypes.c_void_p.from_buffer(user).value)
            session = wintypes.DWORD.from_buffer(self.token_information(token, 12)).value  # TokenSessionId
        finally:
            self.kernel32.CloseHandle(token)
        return account, session, pid.value, self.processes().get(pid.value, (None, None))[1]

    def token_information(self, token, kind):
        needed = wintypes.DWORD()
        self.advapi32.GetTokenInformation(token, kind, None, 0, ctypes.byref(needed))
        buffer = ctypes.create_string_buffer(max(needed.value, 4))
        if not self.advapi32.GetTokenInformation(token, kind, buffer, len(buffer), ctypes.byref(needed)):
            raise self.error()
        return buffer

    def sid_string(self, sid):
        text = ctypes.c_void_p()
        if not self.advapi32.ConvertSidToStringSidW(sid, ctypes.byref(text)):
            raise self.error()
        try:
            return ctypes.wstring_at(text.value)
        finally:
            self.kernel32.LocalFree(text)

    def broker_sids(self):
        """The task SIDs (S-1-5-87-...) of this process's token: Task Scheduler adds the broker task's
        (ProcessTokenSidType Unrestricted), and registration.py grants that one read."""
        if self.readers is None:
            token = wintypes.HANDLE()
            if not self.advapi32.OpenProcessToken(self.kernel32.GetCurrentProcess(), 0x0008, ctypes.byref(token)):
                raise self.error()
            try:
                groups = self.token_information(token, 2)  # TokenGroups: a count, then {PSID, attributes} each
            finally:
                self.kernel32.CloseHandle(token)
            count = wintypes.DWORD.from_buffer(groups).value
            slots = (ctypes.c_void_p * (2 * count)).from_buffer(groups, ctypes.sizeof(ctypes.c_void_p))
            self.readers = frozenset(sid for sid in (self.sid_string(slots[2 * i]) for i in range(count))
                                     if sid.startswith("S-1-5-87-"))
        return self.readers

    def read_secret_file(self, path, account):
        """The registration file, read only when it is a regular file on a local drive, not a link,
        owned by ``account``, whose DACL grants nothing to anyone but that account, SYSTEM,
        Administrators and this broker's task SID."""
        if not (len(path) > 3 and path[0].isascii() and path[0].isalpha() and path[1:3] == ":\\"):
            raise PermissionError("not a path on a local drive")
        handle = self.kernel32.CreateFileW(  # GENERIC_READ, FILE_SHARE_READ, OPEN_EXISTING,
            path, 0x80000000, 0x1 | 0x4, None, 3, 0x00200000 | 0x00110000, None)  # FILE_SHARE_READ | _DELETE
        # FILE_FLAG_OPEN_REPARSE_POINT (a link is opened, not followed), SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION
        if handle in (None, INVALID_HANDLE_VALUE):
            raise self.error()
        try:
            info = (wintypes.DWORD * 13)()  # BY_HANDLE_FILE_INFORMATION, dwFileAttributes first
            if (self.kernel32.GetFileType(handle) != 1 or not self.kernel32.GetFileInformationByHandle(handle, info)
                    or info[0] & 0x410):  # FILE_TYPE_DISK; FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY
                raise PermissionError("not a regular file")
            owner, dacl, descriptor = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
            error = self.advapi32.GetSecurityInfo(handle, 1, 0x1 | 0x4, ctypes.byref(owner), None,  # SE_FILE_OBJECT
                                                  ctypes.byref(dacl), None, ctypes.byref(descriptor))
            if error:
                raise self.error(error)
            try:
                self.check_file_security(owner.value, dacl.value, account)
            finally:
                self.kernel32.LocalFree(descriptor)
            return self.read_handle(handle, MAX_SECRET_FILE_BYTES + 1)
        finally:
            self.kernel32.CloseHandle(handle)

    def check_file_security(self, owner, dacl, account):
        import struct

        if self.sid_string(owner) != account:
            raise PermissionError("owned by another account")
        if not dacl:
            raise PermissionError("no DACL: every account may read it")
        allowed = {account, "S-1-5-18", "S-1-5-32-544", "S-1-3-4"} | self.broker_sids()  # SYSTEM, Administrators,
        count, offset = struct.unpack_from("<H", ctypes.string_at(dacl + 4, 2))[0], 8  # OWNER RIGHTS; ACL header
        for _ in range(count):
            kind, flags, size = struct.unpack("<BBH", ctypes.string_at(dacl + offset, 4))
            if kind in (0, 9) and not flags & 0x08:  # ACCESS_ALLOWED(_CALLBACK)_ACE, not INHERIT_ONLY: mask, then SID
                sid = self.sid_string(dacl + offset + 8)
                if sid not in allowed:
                    raise PermissionError("the file grants access to %s" % sid)
            elif kind not in (0, 1, 6, 9, 10, 12):  # the kinds that deny take nothing from this check
                raise PermissionError("an access entry of kind %d" % kind)
            offset += size

    def tcp_rows(self, table):
        """((local ip, port), (remote ip, port), state, pid, made) of each IPv4 TCP row of the table
        TCP_TABLE_OWNER_MODULE_LISTENER (6) or TCP_TABLE_OWNER_MODULE_CONNECTIONS (7) (TCP_TABLE_CLASS).
        MIB_TCPTABLE_OWNER_MODULE is dwNumEntries, then MIB_TCPROW_OWNER_MODULE rows, "padding for alignment"
        allowed before the first row and between rows (Microsoft Learn, MIB_TCPTABLE_OWNER_MODULE): the rows
        are at C's natural alignment, which ctypes computes. MIB_TCPROW_OWNER_MODULE (Microsoft Learn): six
        DWORDs (dwState, dwLocalAddr, dwLocalPort, dwRemoteAddr, dwRemotePort, network byte order; dwOwningPid,
        the process that issued the bind), LARGE_INTEGER liCreateTimestamp ("a FILETIME structure that
        indicates when the context bind operation that created this TCP link occurred": ``made``), ULONGLONG
        OwningModuleInfo[TCPIP_OWNING_MODULE_SIZE], 16 in iprtrmib.h: 160 bytes, 8-aligned, rows from offset 8
        (as x86_64-w64-mingw32-gcc's static asserts on mingw-w64's headers agree)."""
        class Row(ctypes.Structure):
            _fields_ = [("dword", ctypes.c_uint32 * 6), ("liCreateTimestamp", ctypes.c_int64),
                        ("OwningModuleInfo", ctypes.c_uint64 * 16)]

        size = wintypes.DWORD(0)
        for _ in range(5):  # the table may grow between the two calls
            buffer = ctypes.create_string_buffer(size.value or 4)
            status = self.iphlpapi.GetExtendedTcpTable(buffer, ctypes.byref(size), False, socket.AF_INET, table, 0)
            if status == 0:
                break
            if status != 122:  # ERROR_INSUFFICIENT_BUFFER
                raise OSError("GetExtendedTcpTable failed with error %d" % status)
        else:
            raise OSError("GetExtendedTcpTable kept growing")
        count = ctypes.c_uint32.from_buffer(buffer).value
        rows = (Row * count).from_buffer(buffer, ctypes.alignment(Row))

        def end(address, port):
            return socket.inet_ntoa(address.to_bytes(4, "little")), socket.ntohs(port & 0xFFFF)

        return [(end(r.dword[1], r.dword[2]), end(r.dword[3], r.dword[4]), r.dword[0], r.dword[5], r.liCreateTimestamp)
                for r in rows]

    def processes(self, since=None):
        """{pid: (session, creation time)} of every process, from NtQuerySystemInformation
        (SystemProcessInformation), which opens no process. SYSTEM_PROCESS_INFORMATION as Microsoft
        Learn gives it (winternl.h), with CreateTime inside its Reserved1 at offset 32, where MS-TSTS
        2.2.2.15.1 (TS_SYS_PROCESS_INFORMATION, the same record) names it: 100 ns units since 1601 UTC, a
        FILETIME, as liCreateTimestamp is.

        The last list is reused (no walk on the event loop at each request) only when it was taken after
        ``since``, the FILETIME a socket was made: a process it names with a creation time no later than that
        held the pid then (see socket_owner). ``since=None``: a new list. What a reused list allows: a process
        that has ended since still owns the sockets it made before the list (true), and nothing newer is ever
        read from it. The time is taken before the walk, so the list is no older than it says; a clock set
        back between a list and a socket could make a list look newer than it is."""
        taken, found = self.snapshot or (0, {})
        if since is not None and since < taken:
            return found
        taken = time.time_ns() // 100 + 116444736000000000  # now as a FILETIME (1601 to 1970 in 100 ns)

        class Entry(ctypes.Structure):
            _fields_ = [("NextEntryOffset", wintypes.ULONG), ("NumberOfThreads", wintypes.ULONG),
                        ("Reserved1", ctypes.c_byte * 24), ("CreateTime", ctypes.c_int64),
                        ("Reserved2", ctypes.c_byte * 16), ("ImageNameLengths", ctypes.c_ushort * 2),
                        ("ImageNameBuffer", ctypes.c_void_p), ("BasePriority", ctypes.c_long),
                        ("UniqueProcessId", ctypes.c_void_p), ("Reserved3", ctypes.c_void_p),
                        ("HandleCount", wintypes.ULONG), ("SessionId", wintypes.ULONG)]

        size = 1 << 20
        for _ in range(8):
            buffer, needed = ctypes.create_string_buffer(size), wintypes.ULONG()
            status = self.ntdll.NtQuerySystemInformation(5, buffer, size, ctypes.byref(needed)) & 0xFFFFFFFF
            if status == 0:
                break
            if status != 0xC0000004:  # STATUS_INFO_LENGTH_MISMATCH
                raise OSError("NtQuerySystemInformation failed with NTSTATUS 0x%08X" % status)
            size = max(size, needed.value) * 2
        else:
            raise OSError("NtQuerySystemInformation kept growing")
        found, offset = {}, 0
        while True:
            entry = Entry.from_buffer(buffer, offset)
            found[entry.UniqueProcessId or 0] = (entry.SessionId, entry.CreateTime)
            if not entry.NextEntryOffset:
                self.snapshot = (taken, found)
                return found
            offset += entry.NextEntryOffset

    def socket_owner(self, pid, made):
        """(session, creation time) of the process that made a socket, or None. The table's pid is the one
        that bound it, which may have ended since (an inherited socket outlives it) and its pid gone to a
        process of another session: the owner is the process that held the pid when the socket was made, so
        created no later than liCreateTimestamp, in a list taken after it (processes(since=made))."""
        owner = self.processes(since=made).get(pid)
        return owner if owner is not None and owner[1] <= made else None

    def connection_owner(self, client, server):
        """The session of the process that made the client end of a browser connection."""
        for local, remote, state, pid, made in self.tcp_rows(7):
            if local == tuple(client) and remote == tuple(server) and state == 5:  # MIB_TCP_STATE_ESTAB
                return (self.socket_owner(pid, made) or (None, None))[0]
        return None

    def listener_matches(self, port, registration):
        """True when the one listener on 127.0.0.1:port is the registering process itself: the same
        pid, created at the time recorded when it connected to the channel (a pid can be reused), and
        the process that made the listening socket (socket_owner)."""
        rows = [(pid, made) for local, _remote, _state, pid, made in self.tcp_rows(6) if local == ("127.0.0.1", port)]
        created = registration.connection.created
        return bool(rows) and created is not None and all(
            pid == registration.pid and (self.socket_owner(pid, made) or (None, None))[1] == created
            for pid, made in rows)

    def session_user_matches(self, session, account):
        """True when ``account`` (a SID string) is the user signed in to ``session``: a process of another
        account started inside it (runas) must not register it. WTSQuerySessionInformationW on
        WTS_CURRENT_SERVER_HANDLE (NULL) for WTSDomainName (7) and WTSUserName (5) (WTS_INFO_CLASS), freed with
        WTSFreeMemory, then LookupAccountNameW of "DOMAIN\\user" (the form its page asks for). Microsoft Learn
        (WTSQuerySessionInformationW): "To query information for another user's session, you must have Query
        Information permission" (Remote Desktop Services Permissions); no Microsoft page found says LOCAL SERVICE
        has it by default. Raises OSError when Windows does not answer: the registration is then refused, and
        the reason logged. LookupAccountNameW may ask a domain controller: call it off the event loop."""
        names = []
        for kind in (7, 5):  # WTSDomainName, WTSUserName
            text, size = ctypes.c_void_p(), wintypes.DWORD()
            if not self.wtsapi32.WTSQuerySessionInformationW(None, session, kind, ctypes.byref(text),
                                                             ctypes.byref(size)):
                raise self.error()
            try:
                names.append(ctypes.wstring_at(text.value))
            finally:
                self.wtsapi32.WTSFreeMemory(text)
        if not names[1]:
            return False  # nobody is signed in to the session
        sid, sid_size = ctypes.create_string_buffer(68), wintypes.DWORD(68)  # SECURITY_MAX_SID_SIZE
        domain, domain_size, use = ctypes.create_unicode_buffer(256), wintypes.DWORD(256), wintypes.DWORD()
        if not self.advapi32.LookupAccountNameW(None, "\\".join(names), sid, ctypes.byref(sid_size), domain,
                                                ctypes.byref(domain_size), ctypes.byref(use)):
            raise self.error()
        return self.sid_string(sid) == account

    def listeners(self, port, but=None):
        """Every IPv4 listener on PORT (0.0.0.0 among them) but the one at address ``but``."""
        return sorted({"%s pid %d" % (local[0], pid) for local, _remote, _state, pid, _made in self.tcp_rows(6)
                       if local[1] == port and local[0] != but})

    def report_event(self, event_id, message, record):
        """The record in the Application log as well, source gen-bundle-broker: the JSON record is the
        one insertion string (already without control characters and %). Never raises."""
        try:
            if self.event_source is None:
                self.event_source = self.advapi32.RegisterEventSourceW(None, "gen-bundle-broker") or 0
            if self.event_source:
                strings = (wintypes.LPCWSTR * 1)(json.dumps(record, ensure_ascii=True, sort_keys=True))
                self.advapi32.ReportEventW(self.event_source, 0x2 if event_id in self.WARNINGS else 0x4, 0,
                                           event_id, None, 1, 0, strings, None)  # EVENTLOG_WARNING/INFORMATION_TYPE
        except Exception:
            pass


PLATFORM = WindowsPlatform() if sys.platform == "win32" else PosixPlatform()


# ---- the supervisor: holds the address and the channel for its whole life ----

def supervise(options):
    log = Log(options.log, "supervisor")
    delay = RESTART_FIRST
    while True:  # another process holds the address: named in the log, and the address taken once it is free
        try:
            listener = PLATFORM.bind_exclusive(options.ip, options.port)
            break
        except OSError as exc:  # Task Scheduler restarts only a task that failed to start: so it never ends here
            log.event(EVENT_BIND_FAILED, "cannot hold the address; trying again",
                      address="%s:%d" % (options.ip, options.port), error=exc,
                      listeners=PLATFORM.listeners(options.port), retry_in=delay)
            try:
                time.sleep(delay)
            except KeyboardInterrupt:
                return 0
            delay = min(delay * 2, RESTART_CAP)
    delay = RESTART_FIRST
    while True:  # the address stays held while the channel cannot be had
        try:
            channel = PLATFORM.open_channel(options.channel)
            break
        except OSError as exc:  # Windows: another process made the pipe first
            log.event(EVENT_BIND_FAILED, "cannot hold the registration channel; trying again", error=exc,
                      channel=options.channel, retry_in=delay)
            time.sleep(delay)
            delay = min(delay * 2, RESTART_CAP)
    log.event(EVENT_STARTED, "holding the address", address="%s:%d" % (options.ip, options.port),
              channel=options.channel)
    argv = [sys.executable, "-I", os.path.abspath(__file__), "worker"] + common_arguments(options)
    delay = RESTART_FIRST
    while True:
        started = time.monotonic()
        worker = PLATFORM.start_worker(argv, listener, channel)
        try:
            code = worker.wait()
        except KeyboardInterrupt:
            worker.terminate()
            return 0
        ran = time.monotonic() - started
        delay = RESTART_FIRST if ran >= RESTART_STABLE else min(delay * 2, RESTART_CAP)
        log.event(EVENT_WORKER_ENDED, "the worker ended; a new one starts", code=code, ran_seconds=int(ran),
                  restart_in=delay)
        time.sleep(delay)


def common_arguments(options):
    return ["--ip", options.ip, "--port", str(options.port), "--name", options.name,
            "--channel", options.channel, "--log", options.log, "--scan-seconds", str(options.scan_seconds)]


# ---- the worker: the registry and the proxy ----

class Registration:
    def __init__(self, account, session, pid, port, secret, connection):
        self.account, self.session, self.pid = account, session, pid
        self.port, self.secret, self.connection = port, secret, connection


class Registry:
    """Who is registered, by routing key (Windows: session; POSIX: uid)."""

    def __init__(self, log):
        self.log = log
        self.by_session = {}  # session -> {account: Registration}

    def add(self, registration):
        accounts = self.by_session.setdefault(registration.session, {})
        old = accounts.get(registration.account)
        if old is not None and not old.connection.closed():
            raise PermissionError("this account already has a server registered from this session")
        accounts[registration.account] = registration

    def remove(self, registration):
        accounts = self.by_session.get(registration.session, {})
        if accounts.get(registration.account) is registration:
            del accounts[registration.account]
            if not accounts:
                del self.by_session[registration.session]
            self.log.event(EVENT_REGISTRATION_ENDED, "a server's registration ended", account=registration.account,
                           session=registration.session, port=registration.port)

    def route(self, session):
        """The one server registered from ``session``, or why there is none."""
        accounts = self.by_session.get(session, {})
        if len(accounts) == 1:
            return next(iter(accounts.values())), None
        return None, ("two accounts" if accounts else "none")


async def serve_registration(connection, registry, log):
    """One server's registration: one line naming its file, then the connection stays open for
    as long as the registration lasts. ``connection`` is the platform's channel connection
    (account, session, pid, and async read_line, write, wait_closed, close)."""
    account, session, pid = connection.account, connection.session, connection.pid
    registration = line = None
    try:
        line = await connection.read_line(MAX_REGISTRATION_BYTES)
        message = json.loads(line)
        if not isinstance(message, dict) or not isinstance(message.get("file"), str):
            raise ValueError("the message names no file")
        if session is None or session == PLATFORM.SERVICE_SESSION:
            raise PermissionError("registrations from session 0 (services) are refused")
        import asyncio

        asking = asyncio.get_running_loop().run_in_executor(None, PLATFORM.session_user_matches, session, account)
        if not await asyncio.wait_for(asking, REGISTRATION_SECONDS):  # Windows may ask a domain controller
            raise PermissionError("the account is not the user of the session it registers from")
        data = json.loads((await connection.read_secret_file(message["file"]))[:MAX_SECRET_FILE_BYTES])
        port, secret = data.get("port"), data.get("secret")
        if not (isinstance(port, int) and 0 < port < 65536 and isinstance(secret, str) and len(secret) >= 32):
            raise ValueError("the file holds no port and secret")
        candidate = Registration(account, session, pid, port, secret, connection)
        if not PLATFORM.listener_matches(port, candidate):
            raise PermissionError("127.0.0.1:%d is not held by the registering account's process" % port)
        registry.add(candidate)
        registration = candidate
    except Exception as exc:  # whatever a peer sends, the answer is a refusal, never a crash
        connection.settled()
        import tornado.iostream

        if line is not None or not isinstance(exc, tornado.iostream.StreamClosedError):  # one that left saying
            # nothing is not logged (the guard, opening the channel only to ask who serves it)
            log.event(EVENT_REGISTRATION_REFUSED, "a registration was refused", account=account, session=session,
                      pid=pid, reason=exc if str(exc) else type(exc).__name__)
        try:
            await connection.write(b'{"registered": false}\n')
        except Exception:
            pass
        connection.close()
        return
    connection.settled()
    log.event(EVENT_REGISTERED, "a server registered", account=account, session=session, pid=pid, port=port)
    try:
        await connection.write(b'{"registered": true}\n')
        await connection.wait_closed()
    except Exception:
        pass
    finally:
        connection.close()
        registry.remove(registration)


class PosixChannelConnection:
    """A Unix-socket connection of the registration channel; the kernel says who is at the other end."""

    def __init__(self, sock):
        import struct

        import tornado.iostream

        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        self.pid, self.account, _gid = struct.unpack("3i", creds)
        self.session = self.account  # POSIX has no Windows session: the account is the routing key
        self.stream = tornado.iostream.IOStream(sock)
        self.settled = lambda: None

    async def read_line(self, limit):
        import asyncio

        return await asyncio.wait_for(self.stream.read_until(b"\n", max_bytes=limit), REGISTRATION_SECONDS)

    async def read_secret_file(self, path):
        """Read off the event loop, within the deadline: a path on a file system the peer controls
        (FUSE) must not stall the broker."""
        import asyncio

        work = asyncio.get_running_loop().run_in_executor(None, PLATFORM.read_secret_file, path, self.account)
        return await asyncio.wait_for(work, REGISTRATION_SECONDS)

    async def write(self, data):
        await self.stream.write(data)

    async def wait_closed(self):
        try:
            while True:  # the server writes nothing more; anything it sends is read and dropped
                await self.stream.read_bytes(1, partial=True)
        except Exception:
            return

    def closed(self):
        return self.stream.closed()

    def close(self):
        self.stream.close()


class WindowsChannelConnection:
    """One client of the channel's pipe, served by a thread of its own, the only one that touches the
    handle: it reads the first line, asks Windows who sent it, hands the connection to the event loop,
    then does what the loop gives it (writes, and the read of the registration file) and polls until the
    client is gone or the loop closes it. Once Windows has said which account connected, the connection counts
    as pending for that account until settled() (its answer) or its end: a third at once is refused."""

    POLL_SECONDS = 0.2

    def __init__(self, platform, handle, loop):
        import collections

        self.platform, self.handle, self.loop = platform, handle, loop
        self.account = self.session = self.pid = self.created = None
        self.line, self.outgoing, self.lock, self.wake = b"", collections.deque(), threading.Lock(), threading.Event()
        self.closing = self.ended = self.pending = self.busy = self.settle_later = False
        self.gone = loop.create_future()
        self.deadline = time.monotonic() + REGISTRATION_SECONDS

    def run(self, on_connection, log, release):
        import functools

        try:
            # Who the client is can be asked only after a read (impersonation needs one): until then, a
            # client is counted by its session (GetNamedPipeClientSessionId needs no read), so that no
            # session holds more than a few of the channel's threads with lines it never sends.
            session = self.platform.pipe_session(self.handle)
            with self.platform.lock:
                unread = self.platform.unread.get(session, 0)
                if unread >= UNREAD_PER_SESSION:
                    raise PermissionError("too many channel connections from session %d at once" % session)
                self.platform.unread[session] = unread + 1
            try:
                deadline = self.deadline  # REGISTRATION_SECONDS from ConnectNamedPipe
                while (b"\n" not in self.line and len(self.line) <= MAX_REGISTRATION_BYTES
                       and time.monotonic() < deadline):
                    available = self.platform.pipe_available(self.handle)
                    if available is None:
                        raise BrokenPipeError("the client left")
                    if available:
                        self.line += self.platform.read_handle(self.handle, min(available, MAX_REGISTRATION_BYTES + 1))
                    else:
                        time.sleep(0.05)
            finally:
                with self.platform.lock:
                    self.platform.unread[session] -= 1
                    if not self.platform.unread[session]:
                        del self.platform.unread[session]
            self.line = b"".join(self.line.partition(b"\n")[:2])
            self.account, self.session, self.pid, self.created = self.platform.pipe_client(self.handle)
            with self.platform.lock:
                self.pending = self.platform.pending.get(self.account, 0) < PENDING_PER_ACCOUNT
                if self.pending:
                    self.platform.pending[self.account] = self.platform.pending.get(self.account, 0) + 1
            if not self.pending:
                raise PermissionError("too many registrations at once")
        except Exception as exc:  # whatever happens, the handle is closed and the slot given back
            if self.line or not isinstance(exc, BrokenPipeError):  # one that left saying nothing (the guard) is not
                self.loop.call_soon_threadsafe(functools.partial(  # logged
                    log.event, EVENT_REGISTRATION_REFUSED, "a channel connection was refused", account=self.account,
                    reason=exc))
            self.finish(release)
            return
        self.loop.call_soon_threadsafe(on_connection, self)
        try:
            while not self.closing:
                self.wake.clear()
                while self.outgoing:
                    job, done = self.outgoing.popleft()
                    with self.platform.lock:
                        self.busy = True
                    try:
                        result, error = job(), None
                    except Exception as exc:  # an OSError, or whatever reading a file a client names raised
                        result, error = None, exc
                    finally:
                        with self.platform.lock:
                            self.busy, later = False, self.settle_later
                    if later:
                        self.settled()
                    self.loop.call_soon_threadsafe(self.settle, done, error, result)
                available = self.platform.pipe_available(self.handle)
                if available is None:
                    break
                if available:  # the server writes nothing more; anything it sends is read and dropped
                    self.platform.read_handle(self.handle, min(available, 4096))
                self.wake.wait(self.POLL_SECONDS)
        except OSError:
            pass
        finally:
            self.finish(release)

    def finish(self, release):
        with self.lock:
            self.ended = True
            pending = list(self.outgoing)
            self.outgoing.clear()
        self.platform.pipe_close(self.handle)
        self.settled()
        release()
        for _job, done in pending:
            self.loop.call_soon_threadsafe(self.settle, done, BrokenPipeError("the client left"))
        self.loop.call_soon_threadsafe(self.settle, self.gone, None)

    def settled(self):
        """No longer pending for its account (answered, or ended); only the first call counts. While this
        connection's thread is still inside a job (a read of the registration file that an oplock on it
        holds in CreateFileW), the account stays pending until the job returns: a refusal at the deadline
        gives back no slot that a blocked thread still holds, so one account blocks at most
        PENDING_PER_ACCOUNT of the channel's threads."""
        with self.platform.lock:
            if self.busy:
                self.settle_later = True
                return
            if self.pending:
                self.pending = False
                self.platform.pending[self.account] -= 1
                if not self.platform.pending[self.account]:
                    del self.platform.pending[self.account]

    @staticmethod
    def settle(future, error, result=None):
        if not future.done():
            future.set_exception(error) if error else future.set_result(result)

    async def read_line(self, limit):
        if not self.line.endswith(b"\n") or len(self.line) > limit:
            raise ValueError("no line of at most %d bytes within %d s" % (limit, REGISTRATION_SECONDS))
        return self.line

    async def submit(self, job):
        """job() done by this connection's thread; its result, or what it raised."""
        done = self.loop.create_future()
        with self.lock:
            if self.ended:
                raise BrokenPipeError("the client left")
            self.outgoing.append((job, done))
        self.wake.set()
        return await done

    async def write(self, data):
        import functools

        await self.submit(functools.partial(self.platform.pipe_write, self.handle, data))

    async def read_secret_file(self, path):
        """The registration file (WindowsPlatform.read_secret_file), read by this connection's thread: an
        oplock or a slow path holds that thread, never the event loop; given up at the registration's
        deadline (REGISTRATION_SECONDS from the connection). A thread still blocked in CreateFileW then ends
        when Windows lets it, holding its channel slot, and its account's pending count, until then."""
        import asyncio
        import functools

        job = functools.partial(self.platform.read_secret_file, path, self.account)
        return await asyncio.wait_for(self.submit(job), max(0.0, self.deadline - time.monotonic()))

    async def wait_closed(self):
        await self.gone

    def closed(self):
        return self.ended or self.closing

    def close(self):
        self.closing = True
        self.wake.set()


def run_worker(options):
    import asyncio

    asyncio.run(worker_main(options))


async def worker_main(options):
    import asyncio

    import tornado.ioloop

    log = Log(options.log, "worker")
    registry = Registry(log)
    listener, channel = PLATFORM.worker_sockets(options, 0)
    threading.Thread(target=end_with_supervisor, args=(0,), daemon=True).start()

    def on_channel(connection):
        tornado.ioloop.IOLoop.current().spawn_callback(serve_registration, connection, registry, log)

    PLATFORM.accept_registrations(channel, on_channel, log)
    app, server_class = proxy_application(options, registry, log)
    server = server_class(
        app, xheaders=False, max_header_size=MAX_HEADER_BYTES, max_body_size=MAX_BODY_BYTES,
        idle_connection_timeout=IDLE_SECONDS, body_timeout=BODY_SECONDS)
    listener.setblocking(False)
    server.add_sockets([listener])
    seen = set()
    while True:
        try:
            others = set(PLATFORM.listeners(options.port, but=options.ip))
        except Exception as exc:  # a look that failed this time; the broker goes on
            log.event(EVENT_OTHER_LISTENER, "could not list the listeners on the broker's port", error=exc)
            others = seen
        for other in sorted(others - seen):
            log.event(EVENT_OTHER_LISTENER, "another listener on the broker's port", listener=other)
        seen = others
        await asyncio.sleep(options.scan_seconds)


def end_with_supervisor(lifeline):
    """The supervisor holds the other end of standard input: when it is gone, so is the worker."""
    while os.read(lifeline, 4096):
        pass
    os._exit(0)


def proxy_application(options, registry, log):
    import tornado.httpserver
    import tornado.routing
    import tornado.web
    import tornado.websocket
    from tornado import httpclient, httputil, netutil

    host = options.name if options.port == 80 else "%s:%d" % (options.name, options.port)
    origin = "http://" + host

    class Loopback(netutil.Resolver):
        """The servers are always at 127.0.0.1: no getaddrinfo, in a thread, for each WebSocket."""

        async def resolve(self, host, port, family=socket.AF_UNSPEC):
            return [(socket.AF_INET, (host, port))]

    open_connections = {}  # routing key -> open browser connections

    class Refused(Exception):
        def __init__(self, status, title, text, reason):
            super().__init__(reason)
            self.status, self.title, self.text, self.reason = status, title, text, reason

    def check_request(request):
        """The request's own checks, then who sent it. Returns the registration to forward to."""
        if len(request.headers.get_list("Host")) != 1 or request.headers.get("Host") != host:
            raise Refused(400, "Wrong address", "This server answers only to " + origin + "/.", "Host header")
        if not request.uri.startswith("/"):
            raise Refused(400, "Bad request", "Absolute-form request targets are refused.", "request target")
        if request.version != "HTTP/1.1":  # an HTTP/1.0 keep-alive client could not tell streamed answers apart
            raise Refused(400, "Bad request", "Only HTTP/1.1 is taken.", "version %s" % request.version)
        if "Content-Length" in request.headers and "Transfer-Encoding" in request.headers:
            raise Refused(400, "Bad request", "Content-Length and Transfer-Encoding together are refused.",
                          "Content-Length with Transfer-Encoding")
        if "Transfer-Encoding" in request.headers and request.method not in ("POST", "PUT", "PATCH"):
            # tornado's client frames a body it has no length for only for these: another would reach the
            # server, on this client's kept connection, as the start of a next request.
            raise Refused(400, "Bad request", "A chunked body is taken only with POST, PUT and PATCH.",
                          "Transfer-Encoding with %s" % request.method)
        sent_origin = request.headers.get_list("Origin")
        if sent_origin and sent_origin != [origin]:
            raise Refused(403, "Refused", "Requests from another site are refused.", "Origin %s" % sent_origin)
        # A WebSocket or a request that changes something must come from a page of this origin.
        # Browsers send Origin on both. Fetch Metadata (Sec-Fetch-Site) is sent only to potentially
        # trustworthy origins (HTTPS, localhost), which http://NAME/ is not: checked when present.
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade or request.method not in SAFE_METHODS:
            if sent_origin != [origin]:
                raise Refused(403, "Refused", "Only pages of " + origin + "/ may change anything here.", "no Origin")
            if request.headers.get_list("Sec-Fetch-Site") not in ([], ["same-origin"]):
                raise Refused(403, "Refused", "Only pages of " + origin + "/ may change anything here.",
                              "Sec-Fetch-Site")
        key = connection_key(request)
        if key is None:
            raise Refused(403, "Who is this?", "Windows did not say which account opened this connection.",
                          "no owner")
        if key == PLATFORM.SERVICE_SESSION:
            raise Refused(403, "Through a proxy?", "This connection comes from a Windows service, not from your "
                          "browser: most often a proxy. Your browser's proxy settings must bypass " + options.name
                          + " (Internet Options, Connections, LAN settings, Bypass).", "session 0")
        registration, why = registry.route(key)
        if registration is None:
            if why == "two accounts":
                raise Refused(403, "Two accounts", "Two accounts have a server registered from this Windows "
                              "session, so " + origin + "/ cannot tell whose this is.", "two accounts")
            raise Refused(503, "Your notebook server is not running",
                          "This address is your own Jupyter notebook server, started when you log on. It is not "
                          "running for your account now: it may still be starting (try again in a minute). What "
                          "happened at its last start is in the file launcher.log in %LOCALAPPDATA%\\gen-bundle\\"
                          + options.name + ".", "not registered")
        if not PLATFORM.listener_matches(registration.port, registration):
            raise Refused(502, "Your notebook server is not answering", "Its port is held by another process; "
                          "it starts again by itself.", "listener changed on port %d" % registration.port)
        return registration

    def connection_key(request):
        return getattr(request.connection.stream, "gen_bundle_key", None)

    class Server(tornado.httpserver.HTTPServer):
        """Asks the OS who owns each browser connection once, when it is accepted, and caps
        how many connections one account holds."""

        def handle_stream(self, stream, address):
            try:
                key = PLATFORM.connection_owner(address[:2], stream.socket.getsockname()[:2])
            except OSError:
                key = None
            cap = MAX_UNROUTED_CONNECTIONS if key is None or key == PLATFORM.SERVICE_SESSION else (
                MAX_CONNECTIONS_PER_ACCOUNT)
            if open_connections.get(key, 0) >= cap or sum(open_connections.values()) >= MAX_CONNECTIONS:
                log.event(EVENT_CONNECTION_REFUSED, "too many connections", key=key)
                stream.close()
                return
            open_connections[key] = open_connections.get(key, 0) + 1
            stream.gen_bundle_key = key
            super().handle_stream(stream, address)

        def on_close(self, server_conn):
            backend = getattr(server_conn.stream, "gen_bundle_backend", None)
            if backend is not None:
                backend[1].close()
            if not getattr(server_conn.stream, "gen_bundle_relay", False):  # a WebSocket's: Relay.on_close
                release(server_conn.stream.gen_bundle_key)
            super().on_close(server_conn)

    def release(key):
        open_connections[key] -= 1
        if not open_connections[key]:
            del open_connections[key]

    def backend_headers(request, registration):
        headers = httputil.HTTPHeaders()
        for name, value in request.headers.get_all():
            if name.lower() not in HOP_BY_HOP:
                headers.add(name, value)
        headers["Host"] = host
        headers[REQUEST_SECRET_HEADER] = registration.secret
        return headers

    def backend_target(request):
        """The path and query as sent, less any token parameter: the broker's header is the only sign-in."""
        from urllib.parse import unquote_plus

        path, mark, query = request.uri.partition("?")
        if mark:  # the name as the server decodes it: tok%65n is token too
            kept = [part for part in query.split("&") if unquote_plus(part.split("=", 1)[0]) != "token"]
            path += ("?" + "&".join(kept)) if kept else ""
        return path

    def page(handler, refused):
        import html

        handler.clear()
        handler.set_status(refused.status)
        handler.set_header("Content-Type", "text/html; charset=utf-8")
        handler.set_header("Cache-Control", "no-store")
        handler.set_header("X-Content-Type-Options", "nosniff")
        handler.set_header("Content-Security-Policy", "default-src 'none'")
        handler.finish("<!doctype html><html><head><meta charset=utf-8><title>%s</title></head><body><h1>%s</h1>"
                       "<p>%s</p><p><small>%s is gen-bundle's address for a Jupyter notebook server of your own."
                       "</small></p></body></html>" % (html.escape(refused.title), html.escape(refused.title),
                                                       html.escape(refused.text), html.escape(origin)))
        address = handler.request.connection.context.address
        log.event(EVENT_CONNECTION_REFUSED, "a request was refused", reason=refused.reason, status=refused.status,
                  client="%s:%d" % address[:2], method=handler.request.method, path=handler.request.path[:200])

    @tornado.web.stream_request_body
    class Forward(tornado.web.RequestHandler):
        SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

        def initialize(self):
            import asyncio

            self.body = asyncio.Queue(maxsize=16)
            self.registration = None
            self.response_started = False

        def prepare(self):
            try:
                self.registration = check_request(self.request)
            except Refused as refused:
                page(self, refused)
                return
            self.request.connection.set_max_body_size(MAX_BODY_BYTES)
            self.fetching = self.forward()
            import tornado.ioloop

            self.done = tornado.ioloop.IOLoop.current().asyncio_loop.create_task(self.fetching)

        async def data_received(self, chunk):
            await self.body.put(chunk)

        async def forward(self):
            """The request to the registered server, on this browser connection's own connection to it
            (kept while both sides keep it alive, and never another client's), the answer streamed back
            as it comes: the server's headers as they are, its body no faster than the browser takes it."""
            import asyncio

            from tornado import http1connection, iostream

            handler = self
            browser = self.request.connection.stream
            kept = getattr(browser, "gen_bundle_backend", None)
            if kept is None or kept[0] is not self.registration or kept[1].closed():
                if kept is not None:
                    kept[1].close()
                backend = iostream.IOStream(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                try:
                    await asyncio.wait_for(backend.connect(("127.0.0.1", self.registration.port)), 10)
                except Exception as exc:
                    backend.close()
                    page(self, Refused(502, "Your notebook server is not answering", "It may be restarting; try "
                                       "again in a minute.", "backend: %s" % exc))
                    return
                backend.set_nodelay(True)
                kept = browser.gen_bundle_backend = (self.registration, backend)  # closed with it: Server.on_close
            backend = kept[1]
            exchange = http1connection.HTTP1Connection(backend, True, http1connection.HTTP1ConnectionParameters(
                max_header_size=MAX_HEADER_BYTES, max_body_size=MAX_BODY_BYTES, decompress=False))

            class Answer(httputil.HTTPMessageDelegate):
                def headers_received(self, start_line, headers):
                    handler.start_response(start_line, headers)

                def data_received(self, chunk):
                    handler.write(chunk)
                    return handler.flush()  # read no faster than the browser takes it

            try:
                await exchange.write_headers(httputil.RequestStartLine(
                    self.request.method, backend_target(self.request), "HTTP/1.1"),
                    backend_headers(self.request, self.registration))
                while True:
                    chunk = await self.body.get()
                    if chunk is None:
                        break
                    await exchange.write(chunk)
                exchange.finish()
                if not await exchange.read_response(Answer()):
                    raise ValueError("the server's answer was malformed")
            except Exception as exc:
                backend.close()
                if not self.response_started:
                    page(self, Refused(502, "Your notebook server is not answering", "It may be restarting; try "
                                       "again in a minute.", "backend: %s" % exc))
                else:  # cut short: the browser must not take what came as the whole answer
                    self.request.connection.stream.close()
                return

        def start_response(self, start_line, headers):
            self.response_started = True
            self.clear()
            self.set_status(start_line.code, start_line.reason)
            for header in ("Content-Type", "Server", "Date"):
                self.clear_header(header)
            for name, value in headers.get_all():
                if name.lower() not in HOP_BY_HOP:
                    self.add_header(name, value)

        async def handle(self):
            if self._finished:
                return
            await self.body.put(None)
            await self.done
            if not self._finished:
                self.finish()

        get = head = post = put = patch = delete = options = handle

        def on_connection_close(self):
            super().on_connection_close()  # tornado's own: ends the request's wait for its body
            if self.registration is not None and not self.body.full():
                self.body.put_nowait(None)

        def compute_etag(self):
            return None  # the server's own, or none: not one made up from what the broker wrote

    class Relay(tornado.websocket.WebSocketHandler):
        """A WebSocket to the registered server: one backend connection per browser connection."""

        backend = None

        async def get(self, *args, **kwargs):
            try:
                self.registration = check_request(self.request)
            except Refused as refused:
                page(self, refused)
                return
            from tornado.websocket import websocket_connect

            # The handshake's own checks first (tornado's, in super().get()): a request that fails
            # them must not leave a connection to the server open behind it.
            sent = self.request.headers
            if not ("upgrade" in [v.strip().lower() for v in sent.get("Connection", "").split(",")]
                    and sent.get("Sec-WebSocket-Key") and sent.get("Sec-WebSocket-Version") in ("7", "8", "13")):
                page(self, Refused(400, "Bad request", "This is not a WebSocket handshake.", "bad handshake"))
                return
            headers = backend_headers(self.request, self.registration)
            for name in list(headers):
                if name.lower() in WEBSOCKET_OWN:
                    del headers[name]
            wanted = [p.strip() for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
            target = httpclient.HTTPRequest("ws://127.0.0.1:%d%s" % (self.registration.port,
                                                                     backend_target(self.request)),
                                            headers=headers, connect_timeout=10)
            try:
                self.backend = await websocket_connect(target, subprotocols=wanted or None, resolver=Loopback(),
                                                       max_message_size=MAX_MESSAGE_BYTES)
            except Exception as exc:
                page(self, Refused(502, "Your notebook server refused the connection", "Reload the page.",
                                   "backend websocket: %s" % exc))
                return
            self.browser = self.request.connection.stream
            self.browser.gen_bundle_relay = True  # counted until the WebSocket closes (on_close), not the request
            try:
                await super().get(*args, **kwargs)
            finally:
                if self.get_status() != 101:
                    self.browser.gen_bundle_relay = False
                    self.backend.close()

        def select_subprotocol(self, subprotocols):
            return self.backend.selected_subprotocol if self.backend else None

        def check_origin(self, sent):
            return sent == origin  # checked exactly in check_request too

        def open(self, *args, **kwargs):
            import tornado.ioloop

            self.set_nodelay(True)  # a kernel's messages go on at once, as the server sends them
            tornado.ioloop.IOLoop.current().spawn_callback(self.pump)

        async def pump(self):
            """The server's messages to the browser, until either side closes."""
            while True:
                message = await self.backend.read_message()
                if message is None:
                    self.close()
                    return
                try:
                    await self.write_message(message, binary=isinstance(message, bytes))
                except tornado.websocket.WebSocketClosedError:
                    self.backend.close()
                    return

        async def on_message(self, message):
            await self.backend.write_message(message, binary=isinstance(message, bytes))

        def on_close(self):
            if self.backend is not None:
                self.backend.close()
            if getattr(self, "browser", None) is not None and self.browser.gen_bundle_relay:
                self.browser.gen_bundle_relay = False
                release(self.browser.gen_bundle_key)

    class IsWebSocket(tornado.routing.Matcher):
        """A WebSocket handshake: a GET with no body (a Relay does not stream one: it would be held whole
        before any check); anything else goes to Forward, which streams or refuses it."""

        def match(self, request):
            return {} if (request.headers.get("Upgrade", "").lower() == "websocket" and request.method == "GET"
                          and "Content-Length" not in request.headers
                          and "Transfer-Encoding" not in request.headers) else None

    application = tornado.web.Application(
        [tornado.routing.Rule(IsWebSocket(), Relay), (r".*", Forward)],
        websocket_max_message_size=MAX_MESSAGE_BYTES, compress_response=False, xsrf_cookies=False)
    return application, Server


def parser():
    parser = argparse.ArgumentParser(prog="broker.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("serve", "worker"))
    parser.add_argument("--ip", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--scan-seconds", type=float, default=LISTENER_SCAN_SECONDS,
                        help="how often to look for other listeners on the port (default: %(default)s)")
    parser.add_argument("--listener-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--channel-fd", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    options = parser().parse_args(argv)
    if options.role == "serve":
        return supervise(options)
    run_worker(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
