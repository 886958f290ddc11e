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
