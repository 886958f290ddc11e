"""--env's progress: the steps the library reports while it builds, and how the CLI shows them
(a redrawn line on a terminal, a line per step otherwise). The index is a real HTTP server on
loopback (conftest.py, support/index.py), the resolver faked."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from generator.environment import Step, Target
from generator.environment.fetch import CHUNK_BYTES, fetch
from generator.environment.lock import parse_lock
from generator.progress import BuildProgress

from support.index import FAKE_UV, Index
from test_environment_errors import lock_for, make_wheel, run

WHEELS = {
    "notebook-7.6.5-py3-none-any.whl": make_wheel("notebook", "7.6.5", {"notebook/__init__.py": b""}),
    # More than two chunks of the download, incompressible: its bytes are reported as they come.
    "jupyter_core-5.9.1-py3-none-any.whl": make_wheel(
        "jupyter_core", "5.9.1", {"jupyter_core/__init__.py": b"", "jupyter_core/blob.bin": os.urandom(600_000)}
    ),
}


def test_fetch_reports_each_wheel_and_its_bytes_as_they_come(index, tmp_path):
    Index.files = {f"/{name}": data for name, data in WHEELS.items()}
    lock = lock_for(f"http://127.0.0.1:{index.server_port}", WHEELS)
    pins = parse_lock(lock, Target("windows", "3.13"), source="the test's lock")
    steps: list[Step] = []
    fetch(pins, cache=tmp_path / "cache", offline=False, progress=steps.append)
    big = len(WHEELS["jupyter_core-5.9.1-py3-none-any.whl"])
    core = [s for s in steps if s.name == "jupyter_core"]
    assert [s.stage for s in core][-1] == "wheel-done" and not core[-1].cached
    received = [s.received for s in core if s.stage == "wheel"]
    assert received == sorted(received) and received[-1] == big and len(received) == -(-big // CHUNK_BYTES)
    assert {(s.index, s.count) for s in core} == {
        (pins.index(next(p for p in pins if p.name == "jupyter_core")) + 1, 2)
    }
    # From the cache: no bytes to report, each wheel said to come from there.
    again: list[Step] = []
    fetch(pins, cache=tmp_path / "cache", offline=True, progress=again.append)
    assert [(s.stage, s.cached) for s in again] == [("wheel-done", True), ("wheel-done", True)]
    assert sorted(s.received for s in again) == sorted(len(d) for d in WHEELS.values())


def test_off_a_terminal_the_cli_writes_a_line_per_step(fake_uv, index, tmp_path):
    Index.files = {f"/{name}": data for name, data in WHEELS.items()}
    lock = lock_for(f"http://127.0.0.1:{index.server_port}", WHEELS)
    fake_uv.register([FAKE_UV, "pip", "compile", fake_uv.any()], stdout=lock, occurrences=2)
    first = run(tmp_path)
    assert first.exit_code == 0, first.stderr
    lines = first.stderr.splitlines()
    assert "\r" not in first.stderr
    start = lines.index("Resolving the packages for the target with uv...")
    wheels = [line for line in lines[start + 1 :] if line.startswith("[")]
    assert len(wheels) == 2 and all(line.endswith(" MB downloaded") for line in wheels), lines
    assert any(line.startswith("[") and "jupyter_core 5.9.1: 0.6 MB" in line for line in wheels), wheels
    assert lines[start + 3] == "Laying out the 2 packages as an environment..."
    # The second build takes every wheel from the cache, and says so.
    second = run(tmp_path, "--force")
    assert second.exit_code == 0, second.stderr
    assert sum(line.endswith(" from the cache") for line in second.stderr.splitlines()) == 2


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_redrawn_with_a_bar():
    screen = Terminal()
    show = BuildProgress(screen)
    show(Step("resolve"))
    for received in (0, 300_000, 600_000):
        show.last_draw = 0.0  # as if the redraw interval had passed
        show(Step("wheel", 1, 2, "pandas", "2.2.3", received, 600_000))
    show(Step("wheel-done", 1, 2, "pandas", "2.2.3", 600_000, 600_000))
    show(Step("wheel-done", 2, 2, "numpy", "2.1.0", 1_200_000, 1_200_000, cached=True))
    show(Step("layout", count=2))
    text = screen.getvalue()
    resolve, drawn, layout = text.split("\n")[0], text.split("\n")[1], text.split("\n")[2]
    assert resolve == "Resolving the packages for the target with uv..."
    frames = drawn.split("\r")[1:]  # one line, drawn again and again
    assert frames[0].startswith("[1/2] pandas 2.2.3  [") and "0.0/0.6 MB" in frames[0]
    assert frames[1].startswith("[1/2] pandas 2.2.3  [" + "#" * 12 + "." * 12 + "]")
    assert frames[3].rstrip() == "[1/2] pandas 2.2.3: 0.6 MB downloaded"
    assert frames[4].rstrip() == "[2/2] numpy 2.1.0: 1.2 MB from the cache"
    assert len(frames[4]) >= len(frames[2])  # padded: nothing of a longer line is left behind
    assert layout == "Laying out the 2 packages as an environment..."
    assert text.endswith("\n")


def test_a_library_caller_gets_no_progress_unless_it_asks(index, tmp_path, capsys):
    Index.files = {f"/{name}": data for name, data in WHEELS.items()}
    lock = lock_for(f"http://127.0.0.1:{index.server_port}", WHEELS)
    pins = parse_lock(lock, Target("windows", "3.13"), source="the test's lock")
    wheels = fetch(pins, cache=tmp_path / "cache", offline=False)
    assert set(wheels) == {hashlib.sha256(d).hexdigest() for d in WHEELS.values()}
    assert capsys.readouterr() == ("", "")


def test_the_progress_module_is_not_loaded_without_env(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from generator.cli import main; "
        f"r = CliRunner().invoke(main, ['--ip', '127.0.0.13', '--name', 'py', '--out', {str(tmp_path / 'o')!r}]); "
        "assert r.exit_code == 0, r.output; print('generator.progress' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert done.stdout.strip() == "False", done.stderr
