r"""gen-bundle 0.2.3: who answers at 127.0.0.13:80, and one-click sign-in to http://py/.

Any account on this PC may listen on a free loopback address. So before the
user's secret goes anywhere, the operating system is asked which process
listens on 127.0.0.13:80, and which account runs it. start-py.bat runs this
file as the user who logged on, with python.exe -I (no environment variables,
no user site-packages):

  check   before each start of the server. Exits 0 when nothing listens on the
          address. Otherwise it writes one line for the launcher's log naming
          the process that holds it (this account's, or another account's, with
          that account's name when Windows shows it) and exits 1: the launcher
          then starts no server that could not listen, and waits.
  open    the Start-menu entry "py notebook". Opens http://py/ signed in
          (the server's secret of this run, from %LOCALAPPDATA%\gen-bundle\py\token)
          only when the process that listens on the address runs as this same
          account and is the server it started last (server.pid there). Otherwise it
          says who holds the address and opens nothing.

Standard library only; reads, and never writes, anything.
"""

# ==== This bundle's values, rendered by gen-bundle from its inputs. ====
STATE_BASE = 'LOCALAPPDATA'  # this user's state: %STATE_BASE%\STATE_PATH
STATE_PATH = 'gen-bundle\\py'
NAME = 'py'
URL = 'http://py/'
AUTH = 'token'
# The files of this user's state folder (the launcher and install.ps1 name them too).
LAUNCHER_LOG_FILE = 'launcher.log'
SERVER_LOG_FILE = 'server.log'
SERVER_LOG_OLD_FILE = 'server.1.log'
SERVER_PID_FILE = 'server.pid'
TOKEN_FILE = 'token'
STABLE_FILE = 'stable'
RUNTIME_FOLDER = 'runtime'
IP = '127.0.0.13'
PORT = 80
TITLE = 'gen-bundle py'

# ==== Below this line the file is the same in every bundle: gen-bundle's templates/python/guard.py.
# ==== The values it uses are the bundle's, above.

import os
import socket
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get(STATE_BASE, ""), *STATE_PATH.split("\\"))
LAUNCHER_LOG = STATE / LAUNCHER_LOG_FILE

class Holder:
    """The process that listens on IP:PORT, as far as this account may see it."""

    def __init__(self, pid, mine, account):
        self.pid = pid  # None when the operating system does not say
        self.mine = mine  # True only when the OS says: the same account as this process
        self.account = account  # the account's name, when the OS shows it

    def describe(self):
        who = "this account (" + self.account + ")" if self.mine else (
            "another account"
            + (" (" + self.account + ")" if self.account else ", whose name Windows does not show to this user"))
        return "process " + (str(self.pid) if self.pid is not None else "(id not shown)") + " of " + who


# Who answers a connection to IP:PORT, most specific first: a listener on the address
# itself, on 0.0.0.0, on the IPv4-mapped IPv6 address, on [::] (a dual-stack socket).
def candidates(ip):
    return [
        (socket.AF_INET, ip), (socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::ffff:" + ip), (socket.AF_INET6, "::"),
    ]


def holder_posix(ip, port):
    """/proc/net/tcp and tcp6 list every socket with its owner's uid, readable without privilege."""
    import pwd

    def key(family, address):
        packed = socket.inet_pton(family, address)
        # The kernel prints each 32-bit word of the address in host (little-endian) order.
        words = [packed[i:i + 4][::-1].hex().upper() for i in range(0, len(packed), 4)]
        return "".join(words) + ":%04X" % port

    wanted = [key(family, address) for family, address in candidates(ip)]
    found = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            table = open(name, encoding="ascii")
        except OSError:
            continue
        with table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[3] == "0A" and fields[1] in wanted:  # 0A: LISTEN
                    found[fields[1]] = (int(fields[7]), fields[9])
    for key in wanted:
        if key in found:
            uid, inode = found[key]
            try:
                account = pwd.getpwuid(uid).pw_name
            except KeyError:
                account = "uid " + str(uid)
            return Holder(pid_of_socket(inode), uid == os.getuid(), account)
    return None


def pid_of_socket(inode):
    """The process holding the socket, among those this account may look into."""
    mark = "socket:[" + inode + "]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/" + entry + "/fd"):
                if os.readlink("/proc/" + entry + "/fd/" + fd) == mark:
                    return int(entry)
        except OSError:
            continue
    return None


def holder_windows(ip, port):
    """GetExtendedTcpTable gives the listening process's id without privilege; the
    process's token gives its account, and only a process of this same account (or one
    that granted access) can be opened: another account's stays "another account"."""
    import ctypes
    from ctypes import wintypes

    iphlpapi = ctypes.WinDLL("iphlpapi")
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    iphlpapi.GetExtendedTcpTable.restype = wintypes.DWORD
    iphlpapi.GetExtendedTcpTable.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(wintypes.DWORD), wintypes.BOOL, wintypes.ULONG, ctypes.c_int, wintypes.ULONG]
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    advapi32.OpenProcessToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
    advapi32.GetTokenInformation.argtypes = [
        wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD)]
    advapi32.GetLengthSid.restype = wintypes.DWORD
    advapi32.GetLengthSid.argtypes = [ctypes.c_void_p]
    advapi32.LookupAccountSidW.argtypes = [
        wintypes.LPCWSTR, ctypes.c_void_p, wintypes.LPWSTR, ctypes.POINTER(wintypes.DWORD),
        wintypes.LPWSTR, ctypes.POINTER(wintypes.DWORD), ctypes.POINTER(ctypes.c_int)]

    class Row(ctypes.Structure):  # MIB_TCPROW_OWNER_PID
        _fields_ = [("state", wintypes.DWORD), ("local_addr", wintypes.DWORD), ("local_port", wintypes.DWORD),
                    ("remote_addr", wintypes.DWORD), ("remote_port", wintypes.DWORD), ("pid", wintypes.DWORD)]

    class Row6(ctypes.Structure):  # MIB_TCP6ROW_OWNER_PID
        _fields_ = [("local_addr", ctypes.c_ubyte * 16), ("local_scope", wintypes.DWORD),
                    ("local_port", wintypes.DWORD),
                    ("remote_addr", ctypes.c_ubyte * 16), ("remote_scope", wintypes.DWORD),
                    ("remote_port", wintypes.DWORD), ("state", wintypes.DWORD), ("pid", wintypes.DWORD)]

    def listeners(family, row_type):
        size = wintypes.DWORD(0)
        for _ in range(5):  # the table may grow between the two calls
            buffer = ctypes.create_string_buffer(size.value or 4)
            status = iphlpapi.GetExtendedTcpTable(buffer, ctypes.byref(size), False, family, 3, 0)  # OWNER_PID_LISTENER
            if status == 0:
                break
            if status != 122:  # ERROR_INSUFFICIENT_BUFFER
                raise OSError("GetExtendedTcpTable failed with error %d" % status)
        else:
            raise OSError("GetExtendedTcpTable kept growing")
        count = wintypes.DWORD.from_buffer(buffer).value
        return (row_type * count).from_buffer(buffer, ctypes.sizeof(wintypes.DWORD))

    by_address = {}
    for row in listeners(2, Row):  # AF_INET; the address is in network byte order in memory
        if socket.ntohs(row.local_port & 0xFFFF) == port:
            address = socket.inet_ntoa(int(row.local_addr).to_bytes(4, "little"))
            by_address.setdefault((socket.AF_INET, address), row.pid)
    for row in listeners(23, Row6):  # AF_INET6
        if socket.ntohs(row.local_port & 0xFFFF) == port:
            by_address.setdefault((socket.AF_INET6, socket.inet_ntop(socket.AF_INET6, bytes(row.local_addr))), row.pid)
    pid = next((by_address[c] for c in candidates(ip) if c in by_address), None)
    if pid is None:
        return None
    if pid in (0, 4):
        return Holder(pid, False, "SYSTEM (HTTP.sys or a Windows service)")

    def token_user(process):
        """(SID bytes, DOMAIN\\name) of the account a process runs as, or None."""
        token = wintypes.HANDLE()
        if not advapi32.OpenProcessToken(process, 0x0008, ctypes.byref(token)):  # TOKEN_QUERY
            return None
        try:
            needed = wintypes.DWORD(0)
            advapi32.GetTokenInformation(token, 1, None, 0, ctypes.byref(needed))  # TokenUser
            info = ctypes.create_string_buffer(needed.value)
            if not advapi32.GetTokenInformation(token, 1, info, needed, ctypes.byref(needed)):
                return None
            sid = ctypes.c_void_p.from_buffer(info).value  # TOKEN_USER.User.Sid
            raw = ctypes.string_at(sid, advapi32.GetLengthSid(sid))
            name, domain = ctypes.create_unicode_buffer(256), ctypes.create_unicode_buffer(256)
            name_len, domain_len, use = wintypes.DWORD(256), wintypes.DWORD(256), ctypes.c_int()
            if advapi32.LookupAccountSidW(None, sid, name, ctypes.byref(name_len), domain, ctypes.byref(domain_len),
                                          ctypes.byref(use)):
                return raw, domain.value + "\\" + name.value
            return raw, None
        finally:
            kernel32.CloseHandle(token)

    mine = token_user(kernel32.GetCurrentProcess())
    process = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not process:
        return Holder(pid, False, None)  # access denied: another account's process
    try:
        theirs = token_user(process)
    finally:
        kernel32.CloseHandle(process)
    if mine is None or theirs is None:
        return Holder(pid, False, None)
    return Holder(pid, theirs[0] == mine[0], theirs[1])


def find_holder():
    return holder_windows(IP, PORT) if sys.platform == "win32" else holder_posix(IP, PORT)


def check():
    """For the launcher, before it starts the server: is IP:PORT free?"""
    try:
        holder = find_holder()
    except Exception as exc:  # never keep the server from trying because this check broke
        print(stamp() + " WARNING: could not tell who listens on %s:%d (%s); starting the server anyway"
              % (IP, PORT, exc))
        return 0
    if holder is None:
        return 0
    advice = ("it may be this account's server from an earlier start that is still ending, or another program"
              if holder.mine else
              "another user's server, or a program of theirs, holds the address; this server starts once it is free")
    print(stamp() + " ERROR: %s:%d is in use by %s; no server is started (%s)." % (IP, PORT, holder.describe(), advice))
    return 1


def open_signed_in():
    """The Start-menu entry: the secret goes only to a server of this same account."""
    try:
        holder = find_holder()
    except Exception as exc:
        return tell("Could not tell who answers at %s (%s). Nothing was opened." % (URL, exc))
    if holder is None:
        return tell("%s is not running for you. What happened at its last start is in\n%s" % (URL, LAUNCHER_LOG))
    if not holder.mine:
        return tell("%s is answered by %s, not by your server.\n\nNothing was sent to it. Your server starts once "
                    "the address is free; see %s" % (URL, holder.describe(), LAUNCHER_LOG))
    try:
        server = int((STATE / SERVER_PID_FILE).read_text(encoding="ascii"))
    except (OSError, ValueError):
        server = None
    if holder.pid is None or holder.pid != server:
        # This account's process, but not the server this account started last (a process id
        # that went to another process, or another program): no secret for it either.
        return tell("%s is answered by %s, which is not your notebook server (process %s).\n\nNothing was "
                    "sent to it; see %s" % (URL, holder.describe(), server, LAUNCHER_LOG))
    link = URL
    if AUTH == "token":
        try:
            link = URL + "?token=" + (STATE / TOKEN_FILE).read_text(encoding="ascii").strip()
        except OSError as exc:
            return tell("Your server runs, but its secret could not be read (%s). Nothing was opened." % exc)
    import webbrowser

    if not webbrowser.open(link):
        return tell("No web browser could be started for %s." % URL)
    return 0


def stamp():
    return time.strftime("%Y-%m-%d %H:%M:%S")


def tell(message):
    """Say why nothing was opened: a message box on Windows (the entry has no console)."""
    if sys.platform == "win32":
        import ctypes

        ctypes.WinDLL("user32").MessageBoxW(None, message, TITLE, 0x30)  # MB_ICONWARNING
    else:
        sys.stderr.write(message + "\n")
    return 1


if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:
        sys.exit(check())
    if sys.argv[1:] == ["open"]:
        sys.exit(open_signed_in())
    sys.stderr.write("usage: python -I " + os.path.basename(sys.argv[0]) + " check|open\n")
    sys.exit(2)
