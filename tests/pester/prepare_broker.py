"""The staged broker (docs/broker.md; no bundle holds it yet), made ready for Broker.Tests.ps1 on the
Windows runner (.github/workflows/windows.yml), with the Python that will run it:

    python tests/pester/prepare_broker.py FOLDER [PYTHON]

PYTHON, the python.exe the task starts, is this one unless named (a Windows path: named when it runs elsewhere).

FOLDER gets
- py.broker.task.xml: the broker's task as tests/test_broker_task.py renders it, for this python.exe
  (UTF-16LE with a BOM, the bytes as rendered);
- py.broker.py: templates/python/broker.py as it is;
- server_config.py: the settings of the runner's own notebook server behind the broker, as
  tests/support/broker.py's server_config() writes them, with the broker task's SID (BROKER_SID)
  before the registration code, which reads it on Windows;
- broker-task-sid.txt: that SID, which the broker's log folder grants.

A file, not ``python -c``: Windows PowerShell 5.1 passes a double quote inside an argument to a
program as it is, which would cut the code apart.
"""

from __future__ import annotations

import builtins
import shutil
import symtable
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]
# tests/support/broker.py imports pwd (its Linux accounts) at the top; Windows has no pwd module.
sys.modules.setdefault("pwd", types.ModuleType("pwd"))

from generator.layout import Layout  # noqa: E402
from generator.spec import build_spec  # noqa: E402

from support.broker import BROKER, REGISTRATION, server_config  # noqa: E402
from test_broker_task import broker_task  # noqa: E402

# The runner's server stands for one started by the logon task at LeastPrivilege, whose new files its
# user owns. The runner is an elevated administrator: Windows gives such a token the Administrators group
# as the default owner of what it creates (Microsoft KB 111541, "New Owner in Take-Ownership Operation"),
# and the broker refuses a registration file owned by anyone but the account that registers. So this
# process's default owner becomes its own user (SetTokenInformation, TokenOwner), before anything is made.
OWN_FILES = """\
def _own_new_files():
    import ctypes
    from ctypes import wintypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.GetCurrentProcess.argtypes = []
    kernel32.CloseHandle.restype = wintypes.BOOL
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    advapi32.OpenProcessToken.restype = wintypes.BOOL
    advapi32.OpenProcessToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
    advapi32.GetTokenInformation.restype = wintypes.BOOL
    advapi32.GetTokenInformation.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD,
                                             ctypes.POINTER(wintypes.DWORD)]
    advapi32.SetTokenInformation.restype = wintypes.BOOL
    advapi32.SetTokenInformation.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD]
    token = wintypes.HANDLE()
    if not advapi32.OpenProcessToken(kernel32.GetCurrentProcess(), 0x0008 | 0x0080, ctypes.byref(token)):
        raise ctypes.WinError(ctypes.get_last_error())  # TOKEN_QUERY | TOKEN_ADJUST_DEFAULT
    try:
        user, size = ctypes.create_string_buffer(256), wintypes.DWORD()
        if not advapi32.GetTokenInformation(token, 1, user, len(user), ctypes.byref(size)):  # TokenUser
            raise ctypes.WinError(ctypes.get_last_error())
        # TOKEN_USER begins with the user SID's address; TOKEN_OWNER is that address alone.
        if not advapi32.SetTokenInformation(token, 4, user, ctypes.sizeof(ctypes.c_void_p)):  # TokenOwner
            raise ctypes.WinError(ctypes.get_last_error())
    finally:
        kernel32.CloseHandle(token)


_own_new_files()


"""


def undefined_names(source: str) -> list[str]:
    """The global names the settings read that nothing in them defines (Jupyter gives get_config)."""
    top = symtable.symtable(source, "server_config.py", "exec")
    defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    defined |= set(dir(builtins)) | {"get_config"}
    used = set()

    def walk(table):
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (table is top or symbol.is_global()):
                used.add(symbol.get_name())
        for child in table.get_children():
            walk(child)

    walk(top)
    return sorted(used - defined)


def main(folder: Path, python: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "py.broker.task.xml").write_bytes(broker_task(python=python))
    shutil.copyfile(BROKER, folder / "py.broker.py")
    sid = Layout(build_spec(ip="127.0.0.13", name="py")).broker_task_sid
    config = server_config(name="py", url="http://py/", channel="gen-bundle-py")
    registration = REGISTRATION.read_text(encoding="ascii")
    if config.count(registration) != 1:
        raise SystemExit("server_config() no longer holds registration.py whole: BROKER_SID has no place")
    config = OWN_FILES + config.replace(registration, f"BROKER_SID = {sid!r}\n" + registration)
    missing = undefined_names(config)
    if missing:
        raise SystemExit("the server's settings read names nothing defines: " + ", ".join(missing))
    (folder / "server_config.py").write_text(config, encoding="ascii")
    (folder / "broker-task-sid.txt").write_text(sid + "\n", encoding="ascii")
    print(f"{folder}: the broker's task for {python}, its task SID {sid}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else sys.executable))
