# ---- The server's output, its watchdog, and the settings that apply the above ----

import atexit  # os, secrets, sys and threading: imported above, by the registration's part
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

    The launcher sends them to server.log, and cmd.exe holds that file open for
    writing while the server runs, shared for reading only: no other handle may
    write, rename or truncate it. So from here on the output goes through a pipe,
    and a thread writes it through the launcher's own handle; when the next write
    would pass the cap, the file's bytes are copied to server.1.log and the file
    starts again from empty. Kernels inherit the pipe, so their output is capped too.
    """

    def __init__(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.target = os.dup(1)  # the launcher's handle to server.log; not inherited
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


def ancestors_windows(depth: int) -> list[int]:
    """Process ids of the parent, grandparent... (Toolhelp snapshot)."""
    import ctypes
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
        return []
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


def watch_launcher() -> None:
    """End the server when the launcher (or what runs it) has gone."""
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
        for pid in ancestors_windows(WATCH_DEPTH):
            # SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION
            handle = kernel32.OpenProcess(0x00100000 | 0x1000, False, pid)
            if not handle:
                break
            born = created(handle)
            if not born or born > child:
                # The parent is gone and its process id was given to a newer process.
                kernel32.CloseHandle(handle)
                break
            handles.append(handle)
            child = born
        if not handles:
            return
        array = (wintypes.HANDLE * len(handles))(*handles)
        if kernel32.WaitForMultipleObjects(len(handles), array, False, 0xFFFFFFFF) >= len(handles):
            return  # WAIT_FAILED: no verdict, so the server keeps running
    else:
        import time

        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(1)
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
