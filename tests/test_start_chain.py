"""The whole start chain, from the task XML to python.exe, link by link.

The task's Exec action is read from the rendered XML, expanded as Task
Scheduler expands it, split by Windows' CommandLineToArgvW (in wine) as
conhost.exe splits its own command line, joined both ways conhost has joined
its client's fields, and each resulting line is started exactly, with
CreateProcessW in the task's working directory, under wine: wine's real
cmd.exe then runs the installed .bat, which must start the stub
python.exe with the launcher's script (test_launcher.py runs that script, and
the server it starts, on Linux). support/chain.py says where each link's
rule comes from.
"""

from __future__ import annotations

import pytest

from generator.layout import Layout
from generator.spec import build_spec

from support.chain import DIRECT, JOIN_AS_IS, JOIN_ESCAPED, Action, client_starts
from test_launcher_wine import Installed

HOSTILE_PYTHONS = [
    r"C:\Tools & Co\Py 3 (x64) 100%\python.exe",
    r"C:\Data\50% off (v2) ^caret !bang 'quote'\python.exe",
    "C:\\Zoë\\日本\\python.exe",
    r"C:\Users\Public\%USERPROFILE% is literal\python.exe",
]

VARIANTS = [
    pytest.param({"scope": scope, "window": window, **extra}, id=f"{scope}-{window}")
    for scope, extra in (("machine", {}), ("user", {"user": "CONTOSO\\alice"}))
    for window in ("hidden", "minimized")
]

# The action of gen-bundle 0.1.0's default bundle, which started nothing on Windows.
BROKEN_ACTION = Action(
    "%SystemRoot%\\System32\\conhost.exe",
    '--headless %SystemRoot%\\System32\\cmd.exe /d /c ""%ProgramFiles%\\gen-bundle\\py\\start-py.bat""',
    "",
)


@pytest.fixture(scope="module")
def wine_env(wine) -> dict[str, str]:
    return wine.environment()


def follow(wine, wine_env, spec, files) -> list:
    action = Action.from_task_xml(files[Layout(spec).task_file])
    return client_starts(action, wine_env, wine.split_command_line)


def start_server_through(wine, site, start) -> list[str]:
    """Run one client line until the stub python.exe has been started once; its argv (the
    launcher's script: the stub stands for python.exe running it).

    A line that ends at once with nothing started and nothing logged is run once more: in CI
    (0.3.3) one such run, right after wine was ended for the line before, ended with exit 1 and
    no output at all, and the same line started the server every other time. A line that cannot
    start the launcher fails both times.
    """
    for _attempt in (1, 2):
        result = wine.run_line_until(start.directory, start.line, lambda: len(wine.starts()) >= 1, plan="stay")
        if result.starts or result.output:
            break
    assert result.starts, (
        f"{start.how}: cmd.exe got {start.line!r} in {start.directory!r} and python.exe was never started\n"
        f"{result.output}\nlauncher.log:\n{site.log()}"
    )
    return result.starts[0].argv


@pytest.mark.wine
@pytest.mark.parametrize("inputs", VARIANTS)
def test_the_task_starts_python_with_the_notebook_server(wine, wine_env, inputs, capsys):
    spec = build_spec(ip="127.0.0.13", name="py", **inputs)
    site = Installed(wine, spec)
    starts = follow(wine, wine_env, spec, site.files)
    for start in starts:
        with capsys.disabled():
            print(f"\n{spec.scope}/{spec.window}, {start.how}:\n  cmd.exe gets: {start.line}")
        argv = start_server_through(wine, Installed(wine, spec), start)
        assert argv == site.argv()
        assert argv[1:] == ["-I", site.script]
    # With conhost.exe on the way, both of its joins were followed.
    assert [start.how for start in starts] == ([JOIN_AS_IS, JOIN_ESCAPED] if spec.window == "hidden" else [DIRECT])


@pytest.mark.wine
def test_the_chain_catches_the_action_that_started_nothing(wine, wine_env, capsys):
    """The same links, fed the 0.1.0 action: cmd.exe reads C:\\Program as the command, and
    neither the launcher nor python.exe ever starts."""
    site = Installed(wine, build_spec(ip="127.0.0.13", name="py"))
    starts = client_starts(BROKEN_ACTION, wine_env, wine.split_command_line)
    assert len(starts) == 2
    for start in starts:
        with capsys.disabled():
            print(f"\n0.1.0 action, {start.how}:\n  cmd.exe gets: {start.line}")
        result = wine.run_line(start.directory, start.line)
        assert result.exit_code != 0, start
        assert result.starts == [], start
        assert site.log() == ""


@pytest.mark.wine
@pytest.mark.parametrize("window", ["hidden", "minimized"])
@pytest.mark.parametrize("python", HOSTILE_PYTHONS)
def test_hostile_install_inputs_through_the_chain(wine, wine_env, python, window):
    """Hostile python.exe paths through every link (the notebook folder no longer passes cmd.exe:
    the launcher's script hands it to the server, test_launcher_wine.py)."""
    spec = build_spec(ip="127.0.0.42", name="lab-1", port=8080, python=python, window=window)
    site = Installed(wine, spec)
    for start in follow(wine, wine_env, spec, site.files):
        assert start_server_through(wine, Installed(wine, spec), start) == site.argv()


@pytest.mark.wine
@pytest.mark.parametrize("code", [0, 3])
def test_the_launchers_end_ends_the_task_line(wine, wine_env, code):
    """--window hidden: when the launcher's script ends, the line conhost started returns its code
    (so the task's own process, and the task, end with it)."""
    spec = build_spec(ip="127.0.0.13", name="py")
    site = Installed(wine, spec)
    start = follow(wine, wine_env, spec, site.files)[-1]
    result = wine.run_line(start.directory, start.line, plan=str(code))
    assert result.exit_code == code, result.output
    assert len(result.starts) == 1


@pytest.mark.wine
@pytest.mark.parametrize("inputs", VARIANTS)
def test_wine_task_scheduler_registers_the_task(wine, inputs):
    """A further, independent reading of the XML: wine's own ``schtasks /create /xml``.

    What wine 8 does with it (seen here): it registers every variant (exit 0) and refuses
    XML that is not well-formed, but stores only RegistrationInfo and Settings - the Exec
    action arrives empty, without triggers or principal - so ``schtasks /run`` starts
    nothing. It checks the file's form, not the chain; test_the_task_starts_python_... does that.
    """
    spec = build_spec(ip="127.0.0.13", name="py", **inputs)
    data = Installed(wine, spec).files[Layout(spec).task_file]
    xml = wine.drive_c / "task.xml"
    xml.write_bytes(data)

    def schtasks(*args: str) -> int:
        import subprocess

        return subprocess.run(["wine", "schtasks", *args], env=wine.env, capture_output=True, timeout=120).returncode

    assert schtasks("/create", "/xml", "C:\\task.xml", "/tn", "\\gen-bundle\\py", "/f") == 0
    stored = wine.host_path("C:\\windows\\system32\\tasks\\gen-bundle\\py").read_bytes().decode("utf-8-sig")
    assert "<URI>\\gen-bundle\\py</URI>" in stored and "<Author>gen-bundle</Author>" in stored
    xml.write_bytes(b"\xff\xfe" + "<Task>not a task".encode("utf-16-le"))  # not well-formed
    assert schtasks("/create", "/xml", "C:\\task.xml", "/tn", "\\gen-bundle\\broken", "/f") != 0
