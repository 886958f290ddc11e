"""The broker's task and a server's settings for the runner's own Python, for Broker.Tests.ps1 on the
Windows runner (.github/workflows/windows.yml), which runs the bundle's own py.broker.py with them:

    python tests/pester/prepare_broker.py FOLDER [PYTHON]

PYTHON, the python.exe the task starts, is this one unless named (a Windows path: named when it runs elsewhere).

FOLDER gets
- py.broker.task.xml: the broker's task as tests/test_broker_task.py renders it, for this python.exe
  (UTF-16LE with a BOM, the bytes as rendered): the bundle's names a python.exe the runner lacks;
- server_config.py: the settings of the runner's own notebook server behind the broker, as
  tests/support/broker.py's server_config() writes them, with the broker task's SID (BROKER_SID)
  before the registration code, which reads it on Windows;
- broker-task-sid.txt: that SID, which the broker's log folder grants.

A file, not ``python -c``: Windows PowerShell 5.1 passes a double quote inside an argument to a
program as it is, which would cut the code apart.
"""

from __future__ import annotations

import builtins
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

from support.broker import REGISTRATION, server_config  # noqa: E402
from test_broker_task import broker_task  # noqa: E402


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
    sid = Layout(build_spec(ip="127.0.0.13", name="py")).broker_task_sid
    config = server_config(name="py", url="http://py/", channel="gen-bundle-py")
    registration = REGISTRATION.read_text(encoding="ascii")
    if config.count(registration) != 1:
        raise SystemExit("server_config() no longer holds registration.py whole: BROKER_SID has no place")
    config = config.replace(registration, f"BROKER_SID = {sid!r}\n" + registration)
    missing = undefined_names(config)
    if missing:
        raise SystemExit("the server's settings read names nothing defines: " + ", ".join(missing))
    (folder / "server_config.py").write_text(config, encoding="ascii")
    (folder / "broker-task-sid.txt").write_text(sid + "\n", encoding="ascii")
    print(f"{folder}: the broker's task for {python}, its task SID {sid}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else sys.executable))
