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
