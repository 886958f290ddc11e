r"""gen-bundle 0.3.18: keeps the Jupyter notebook server for http://py/ running.

install.ps1 puts this file at %ProgramFiles%\gen-bundle\py\start-py.launcher.py; start-py.bat, which
the logon task \gen-bundle\py runs as the user who logs on, runs it with
python.exe -I (no PYTHON* variables, no user site-packages, not this folder on sys.path);
the server it starts gets the user's environment as it is.
It starts the server, and when the server exits starts it again after a pause that doubles from
5 s up to 300 s (back to 5 s after a run of 60 s or more).
Log: %LOCALAPPDATA%\gen-bundle\py\launcher.log (starts, exits, problems and their fixes; kept under
1048576 bytes, the older part in launcher.log.1); the server's own output: server.log there,
kept under 1048576 bytes by the server's config (older output: server.1.log).
One launcher runs per user: while one runs it holds launcher.lock open, and a second one (a
second session of the same account, a second start of the task) waits until the first has ended,
trying again every 5 s. When the task is stopped, the launcher ends, and its server with it.
The server listens on 127.0.0.1 at a port Windows picks and registers with the broker, which
holds 127.0.0.13:80 from boot (start-py.config.py says how).

Standard library only; it writes only this user's own files.
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
CONFIG_FILE = 'start-py.config.py'  # beside this file: the server's settings
LAUNCHER_LOG_FILE = 'launcher.log'
LAUNCHER_LOG_OLD_FILE = 'launcher.log.1'
LAUNCHER_LOCK_FILE = 'launcher.lock'
PYCACHE_FOLDER = ''  # --env: the environment's compiled modules, per user
NOTEBOOK_BASE = 'USERPROFILE'  # the notebook folder: %NOTEBOOK_BASE%\NOTEBOOK_REST
NOTEBOOK_REST = 'Notebooks'
BACKOFF_FIRST = 5
BACKOFF_CAP = 300
LOCK_RETRY = 5
LOG_ROTATE_BYTES = 1048576
LAUNCHER_GONE_EXIT = 86  # the server's exit code when it saw its launcher go
# How many processes above this one to watch: cmd.exe running the .bat, with --window hidden
# conhost.exe too (the task's own process), and with --env the venv's Scripts\python.exe, which
# runs the base python.exe as its child.
WATCH_DEPTH = 2
FIX_NOTEBOOK = 'Fix: run that python.exe with -m pip install notebook.'

# ==== Below this line the file is the same in every bundle: gen-bundle's templates/python/watch.py,
# ==== then templates/python/launcher.py. The values they use are the bundle's, above.

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

# ---- The launcher: one per user, it keeps this user's notebook server running ----

import os
import subprocess
import sys
import threading
import time


def windows_path(base: str, rest: str) -> str:
    """A path as cmd.exe would expand %base%\\rest: the user's own value of the variable."""
    if not base:
        return rest
    return os.path.join(os.environ[base], *rest.split("\\")) if rest else os.environ[base]


HERE = os.path.dirname(os.path.abspath(__file__))  # the install folder: the .bat names this file by its full path
STATE = windows_path(STATE_BASE, STATE_PATH)


def state_file(name: str) -> str:
    return os.path.join(STATE, name)


def log(message: str) -> None:
    """One line of launcher.log, the file install.ps1 shows an administrator when the server does
    not answer. Never fatal: a log that cannot be written must not stop the server."""
    path = state_file(LAUNCHER_LOG_FILE)
    try:
        if os.path.getsize(path) >= LOG_ROTATE_BYTES:
            os.replace(path, state_file(LAUNCHER_LOG_OLD_FILE))
    except OSError:
        pass
    try:
        with open(path, "a", encoding="utf-8", newline="\r\n") as file:
            file.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")
    except OSError:
        pass


def open_held(path: str, *, empty: bool) -> "int | None":
    """A descriptor that writes ``path`` (emptied when ``empty``), opened as cmd.exe opens a
    redirection's target: shared for reading only, so that no other handle may write, rename or
    delete the file while it is open. None when another handle already holds it for writing.
    On Linux, where the tests run, an advisory lock stands for Windows' share mode."""
    if sys.platform == "win32":
        import ctypes
        import msvcrt
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.CreateFileW.restype = wintypes.HANDLE
        kernel32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p,
                                         wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
        # GENERIC_WRITE, FILE_SHARE_READ, CREATE_ALWAYS or OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL
        handle = kernel32.CreateFileW(path, 0x40000000, 0x00000001, None, 2 if empty else 4, 0x80, None)
        if handle in (None, ctypes.c_void_p(-1).value):  # INVALID_HANDLE_VALUE
            error = ctypes.get_last_error()
            if error == 32:  # ERROR_SHARING_VIOLATION
                return None
            raise ctypes.WinError(error)
        return msvcrt.open_osfhandle(handle, os.O_WRONLY)
    import fcntl

    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    if empty:
        os.ftruncate(descriptor, 0)
    return descriptor


def take_lock() -> int:
    """launcher.lock, held for as long as this launcher runs: Windows closes it however the launcher
    ends. A second launcher of this user (a second session of the account, a second start of the
    task) waits here until the first has ended."""
    waiting = False
    while True:
        held = open_held(state_file(LAUNCHER_LOCK_FILE), empty=False)
        if held is not None:
            if waiting:
                log("the other launcher has ended; this one takes over")
            return held
        if not waiting:
            log("another launcher for %s already runs for this user; this one waits until it ends, "
                "checking every %d s" % (URL, LOCK_RETRY))
            waiting = True
        time.sleep(LOCK_RETRY)


STOPPED = "the task's process has ended (the task was stopped, or install.ps1 stopped it); the launcher ends"


def watch_task() -> None:
    """End this launcher when the task's process has ended, also while it waits for the lock or
    between two starts. Its server, which watches this launcher, ends with it."""
    if wait_for_ancestors(WATCH_DEPTH):
        log(STOPPED)
        os._exit(0)


def server_says(text: str) -> bool:
    """Whether the end of the server's output holds ``text``."""
    try:
        with open(state_file(SERVER_LOG_FILE), "rb") as file:
            file.seek(max(0, os.fstat(file.fileno()).st_size - 65536))
            return text.encode("utf-8") in file.read()
    except OSError:
        return False


def run_server() -> int:
    """Start the server once and wait for it: its exit code."""
    notebook_dir = windows_path(NOTEBOOK_BASE, NOTEBOOK_REST)
    os.makedirs(notebook_dir, exist_ok=True)
    try:
        os.replace(state_file(SERVER_LOG_FILE), state_file(SERVER_LOG_OLD_FILE))
    except OSError:
        pass  # none yet, or the older output is held open: the last run's output is then lost
    try:
        os.remove(state_file(STABLE_FILE))
    except FileNotFoundError:
        pass
    environment = dict(os.environ)
    if PYCACHE_FOLDER:
        # Compiled modules go to this user's own folder: no one can write beside the environment's files.
        environment["PYTHONPYCACHEPREFIX"] = state_file(PYCACHE_FOLDER)
    output = open_held(state_file(SERVER_LOG_FILE), empty=True)
    if output is None:
        raise OSError("%s is held open by another program" % state_file(SERVER_LOG_FILE))
    log("starting the notebook server for " + URL)
    try:
        server = subprocess.Popen(
            # sys.executable: the python.exe the .bat started, the one the bundle names.
            [sys.executable, "-m", "notebook", "--no-browser", "--ServerApp.root_dir=" + notebook_dir,
             "--config=" + os.path.join(HERE, CONFIG_FILE)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=environment, cwd=HERE)
    finally:
        os.close(output)
    return server.wait()


def main() -> int:
    threading.Thread(target=watch_task, name="gen-bundle-watch", daemon=True).start()
    try:
        os.makedirs(STATE, exist_ok=True)
        take_lock()  # held until this process ends
    except OSError as error:  # not another launcher: that one is waited for
        log("ERROR: the launcher cannot start: %s; the launcher ends" % error)
        return 1
    delay = BACKOFF_FIRST
    while True:
        if AUTH == "none":
            log("WARNING: sign-in is OFF (--auth none): any account of this PC that finds this user's "
                "server port can run code as this user.")
        try:
            code = run_server()
        except OSError as error:
            log("ERROR: the server could not be started: %s" % error)
        else:
            log("the server exited with code %d" % code)
            if code == LAUNCHER_GONE_EXIT:  # the server saw a process above it end before this launcher did
                log(STOPPED)
                return 0
            if server_says("No module named notebook"):
                log("ERROR: the notebook package is not installed for %s. %s" % (sys.executable, FIX_NOTEBOOK))
            if os.path.exists(state_file(STABLE_FILE)):
                delay = BACKOFF_FIRST
        log("waiting %d s before the next start" % delay)
        time.sleep(delay)
        delay = min(delay * 2, BACKOFF_CAP)


if __name__ == "__main__":
    sys.exit(main())
