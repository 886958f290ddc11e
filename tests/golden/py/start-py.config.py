r"""gen-bundle 0.1.0: settings of the notebook server for http://py/

start-py.bat passes this file to the server with --config. It runs inside
the server, as the user who logged on, and reads and writes only that user's files:

  %LOCALAPPDATA%\gen-bundle\py\token
the user's secret: 256 random bits, made on the first start, kept
      in the user's own profile. It never appears on a command line or in a log.
  %LOCALAPPDATA%\gen-bundle\py\stable
      written once the server has run for 60 s; the launcher then starts
      its restart back-off from 5 s again.
  %APPDATA%\Microsoft\Windows\Start Menu\Programs\py notebook.url
opens http://py/ signed in, with one click; Jupyter then keeps the user
      signed in with a cookie, across restarts of the server.

It also ends the server, with exit code 86, when the launcher that started it
is gone (the task was stopped), so that no server is left running on its own.
"""

import os
import secrets
import sys
import threading
from pathlib import Path

NAME = 'py'
URL = 'http://py/'
AUTH = 'token'
STABLE_AFTER = 60
LAUNCHER_GONE_EXIT = 86
# How many processes up the parent chain to watch: the launcher (cmd.exe), and conhost.exe, which runs it without a window.
WATCH_DEPTH = 2

STATE = Path(os.environ["LOCALAPPDATA"]) / "gen-bundle" / NAME
SHORTCUT = Path(os.environ["APPDATA"]) / "Microsoft" / "Windows" / "Start Menu" / "Programs" / 'py notebook.url'


def user_secret() -> str:
    """The user's token: made once with the operating system's random source."""
    path = STATE / "token"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            token = path.read_text(encoding="ascii").strip()
            if len(token) >= 43:
                return token
            path.unlink()  # empty or cut short by a crash: make a new one
            continue
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
        return token
    raise RuntimeError(f"cannot create {path}")


def write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text(encoding="ascii") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text, encoding="ascii", newline="")
    os.replace(temporary, path)


def mark_stable() -> None:
    (STATE / "stable").write_text("the server ran for %d s\n" % STABLE_AFTER, encoding="ascii")


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
    snapshot = kernel32.CreateToolhelp32Snapshot(0x00000002, 0)  # TH32CS_SNAPPROCESS
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
        handles = [h for h in (kernel32.OpenProcess(0x00100000, False, pid) for pid in ancestors_windows(WATCH_DEPTH)) if h]
        if not handles:
            return
        array = (wintypes.HANDLE * len(handles))(*handles)
        kernel32.WaitForMultipleObjects(len(handles), array, False, 0xFFFFFFFF)
    else:
        import time

        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(1)
    sys.stderr.write("gen-bundle: the launcher is gone; stopping the server\n")
    sys.stderr.flush()
    os._exit(LAUNCHER_GONE_EXIT)


STATE.mkdir(parents=True, exist_ok=True)
c = get_config()  # noqa: F821 - Jupyter defines get_config() for the files it loads
if AUTH == "token":
    c.IdentityProvider.token = user_secret()
    link = URL + "?token=" + c.IdentityProvider.token
else:
    c.IdentityProvider.token = ""
    link = URL
    sys.stderr.write("gen-bundle: WARNING: sign-in is OFF (--auth none): anyone who can use this PC can open "
                     + URL + " and run code as this user\n")
write_if_changed(SHORTCUT, "[InternetShortcut]\r\nURL=" + link + "\r\n")
stable_timer = threading.Timer(STABLE_AFTER, mark_stable)
stable_timer.daemon = True
stable_timer.start()
threading.Thread(target=watch_launcher, name="gen-bundle-watch", daemon=True).start()
