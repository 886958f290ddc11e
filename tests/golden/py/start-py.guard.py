r"""gen-bundle 0.3.18: opens http://py/ when the broker is what answers there.

Any account on this PC may listen on a free loopback address, and the broker holds
127.0.0.13:80 from boot so that none can. The Start-menu entry "py notebook"
runs this file (start-py.bat open, as the user, with python.exe -I: no
environment variables, no user site-packages). It asks the operating system which process
listens on 127.0.0.13:80, and opens http://py/ only when that process is the
broker: the one that serves the broker's pipe \\.\pipe\gen-bundle-py (whose owner must be
LOCAL SERVICE or the broker's task SID), or its parent. Otherwise it says who holds the
address and opens nothing. No secret is handed to anyone: the URL holds none.

Standard library only; reads, and never writes, anything.
"""

# ==== This bundle's values, rendered by gen-bundle from its inputs. ====
URL = 'http://py/'
IP = '127.0.0.13'
PORT = 80
TITLE = 'gen-bundle py'
BROKER_CHANNEL = 'gen-bundle-py'  # the broker's named pipe: \\.\pipe\BROKER_CHANNEL
BROKER_SID = 'S-1-5-87-3373994586-280542677-2501101745-953426644-57861312'  # the broker task's own SID
BROKER_TASK = '\\gen-bundle\\py-broker'

# ==== Below this line the file is the same in every bundle: gen-bundle's templates/python/guard.py.
# ==== The values it uses are the bundle's, above.

import os
import socket
import sys


class Holder:
    """The process that listens on IP:PORT, as far as this account may see it."""

    def __init__(self, pid, mine, account, uid=None):
        self.pid = pid  # None when the operating system does not say
        self.mine = mine  # True only when the OS says: the same account as this process
        self.account = account  # the account's name, when the OS shows it
        self.uid = uid  # POSIX: the owner's uid

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
            return Holder(pid_of_socket(inode), uid == os.getuid(), account, uid)
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


def is_broker(holder):
    """True when the process that listens on IP:PORT is the broker: the process that serves the broker's
    channel (Windows: a pipe whose owner is LOCAL SERVICE or the broker's task SID), or its supervisor."""
    if sys.platform == "win32":
        served_by, parent = broker_process_windows(BROKER_CHANNEL)
        return holder.pid is not None and holder.pid in (served_by, parent)
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with channel:
        channel.connect(BROKER_CHANNEL)
        import struct

        _pid, uid, _gid = struct.unpack("3i", channel.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return holder.uid is not None and holder.uid == uid


def broker_process_windows(name):
    """(the process that serves the broker's pipe, its parent): the worker, and the supervisor that holds the
    address. The pipe's owner is checked first, as the server's registration checks it: a pipe another
    account made first is not the broker's. It sends nothing: the broker logs no refusal for a
    client that leaves saying nothing."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32.CreateFileW.restype = wintypes.HANDLE
    kernel32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p,
                                     wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
    kernel32.CloseHandle.restype = wintypes.BOOL
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    kernel32.LocalFree.restype = wintypes.HANDLE
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    kernel32.GetNamedPipeServerProcessId.restype = wintypes.BOOL
    kernel32.GetNamedPipeServerProcessId.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.ULONG)]
    advapi32.GetSecurityInfo.restype = wintypes.DWORD
    advapi32.GetSecurityInfo.argtypes = [wintypes.HANDLE, ctypes.c_int, wintypes.DWORD] + [
        ctypes.POINTER(ctypes.c_void_p)] * 5
    advapi32.ConvertSidToStringSidW.restype = wintypes.BOOL
    advapi32.ConvertSidToStringSidW.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    handle = kernel32.CreateFileW("\\\\.\\pipe\\" + name, 0x80000000, 0, None, 3,  # GENERIC_READ: it writes nothing
                                  0x00100000 | 0x00010000, None)  # OPEN_EXISTING; SECURITY_SQOS_PRESENT | _IDENTIFICATION
    if handle in (None, ctypes.c_void_p(-1).value):
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        owner, descriptor, text = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        error = advapi32.GetSecurityInfo(handle, 6, 0x1, ctypes.byref(owner), None, None, None,  # SE_KERNEL_OBJECT,
                                         ctypes.byref(descriptor))  # OWNER_SECURITY_INFORMATION
        if not error and not advapi32.ConvertSidToStringSidW(owner, ctypes.byref(text)):
            error = ctypes.get_last_error()
        sid = ctypes.wstring_at(text.value) if text.value else None
        kernel32.LocalFree(text)
        kernel32.LocalFree(descriptor)
        if error:
            raise ctypes.WinError(error)
        if sid not in ("S-1-5-19", BROKER_SID):
            raise PermissionError("the broker's pipe is owned by %s, not by the broker" % sid)
        served_by = wintypes.ULONG()
        if not kernel32.GetNamedPipeServerProcessId(handle, ctypes.byref(served_by)):
            raise ctypes.WinError(ctypes.get_last_error())
    finally:
        kernel32.CloseHandle(handle)
    return served_by.value, parents_windows().get(served_by.value)


def parents_windows():
    """Each process id's parent (Toolhelp snapshot): no process need be opened, which no account may do to
    a LOCAL SERVICE task's process."""
    import ctypes
    from ctypes import wintypes

    class Entry(ctypes.Structure):  # PROCESSENTRY32W
        _fields_ = [
            ("dwSize", wintypes.DWORD), ("cntUsage", wintypes.DWORD), ("th32ProcessID", wintypes.DWORD),
            ("th32DefaultHeapID", ctypes.c_size_t), ("th32ModuleID", wintypes.DWORD), ("cntThreads", wintypes.DWORD),
            ("th32ParentProcessID", wintypes.DWORD), ("pcPriClassBase", ctypes.c_long), ("dwFlags", wintypes.DWORD),
            ("szExeFile", ctypes.c_wchar * 260),
        ]

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    kernel32.CreateToolhelp32Snapshot.argtypes = [wintypes.DWORD, wintypes.DWORD]
    kernel32.Process32FirstW.restype = wintypes.BOOL
    kernel32.Process32FirstW.argtypes = [wintypes.HANDLE, ctypes.c_void_p]
    kernel32.Process32NextW.restype = wintypes.BOOL
    kernel32.Process32NextW.argtypes = [wintypes.HANDLE, ctypes.c_void_p]
    kernel32.CloseHandle.restype = wintypes.BOOL
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    snapshot = kernel32.CreateToolhelp32Snapshot(0x00000002, 0)  # TH32CS_SNAPPROCESS
    if snapshot in (None, ctypes.c_void_p(-1).value):  # INVALID_HANDLE_VALUE
        raise ctypes.WinError(ctypes.get_last_error())
    parents, entry = {}, Entry()
    entry.dwSize = ctypes.sizeof(Entry)
    more = kernel32.Process32FirstW(snapshot, ctypes.byref(entry))
    while more:
        parents[entry.th32ProcessID] = entry.th32ParentProcessID
        more = kernel32.Process32NextW(snapshot, ctypes.byref(entry))
    kernel32.CloseHandle(snapshot)
    return parents


def open_url():
    """The Start-menu entry: opens URL when the broker is what answers there. The browser sends no secret
    (there is none in the URL), but a page from another process at the bundle's address would see what the
    user types and saves there."""
    try:
        holder = find_holder()
    except Exception as exc:
        return tell("Could not tell who answers at %s (%s). Nothing was opened." % (URL, exc))
    if holder is None:
        return tell("Nothing answers at %s: the broker (the boot task %s) is not running. Ask your IT "
                    "department: running install.ps1 again starts it." % (URL, BROKER_TASK))
    try:
        broker = is_broker(holder)
    except Exception as exc:
        return tell("%s is answered by %s, and the broker's channel could not be checked (%s). Nothing was "
                    "opened." % (URL, holder.describe(), exc))
    if not broker:
        return tell("%s is answered by %s, which is not the broker (the boot task %s). Nothing was opened. "
                    "Tell your IT department." % (URL, holder.describe(), BROKER_TASK))
    import webbrowser

    if not webbrowser.open(URL):
        return tell("No web browser could be started for %s." % URL)
    return 0


def tell(message):
    """Say why nothing was opened: a message box on Windows (the entry has no console)."""
    if sys.platform == "win32":
        import ctypes

        ctypes.WinDLL("user32").MessageBoxW(None, message, TITLE, 0x30)  # MB_ICONWARNING
    else:
        sys.stderr.write(message + "\n")
    return 1


if __name__ == "__main__":
    if sys.argv[1:] == ["open"]:
        sys.exit(open_url())
    sys.stderr.write("usage: python -I " + os.path.basename(sys.argv[0]) + " open\n")
    sys.exit(2)
