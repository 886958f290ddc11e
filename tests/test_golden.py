"""The canonical bundle, byte for byte.

After an intended change to a template, regenerate with
``GEN_BUNDLE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and
review the diff of tests/golden/ like any other change.
"""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from generator.cli import main

GOLDEN = Path(__file__).parent / "golden" / "py"


def test_canonical_command_writes_the_golden_bundle(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--ip", "127.0.0.13", "--name", "py", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    if os.environ.get("GEN_BUNDLE_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.iterdir():
            old.unlink()
        for name, data in written.items():
            (GOLDEN / name).write_bytes(data)
    golden = {p.name: p.read_bytes() for p in sorted(GOLDEN.iterdir())}
    assert sorted(written) == sorted(golden)
    for name in golden:
        assert written[name] == golden[name], f"{name} differs from tests/golden/py/{name}"


def test_same_inputs_give_byte_identical_bundles(tmp_path):
    runs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt / "out"
        assert CliRunner().invoke(main, ["--ip", "127.0.0.13", "--name", "py", "--out", str(out)]).exit_code == 0
        runs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert runs[0] == runs[1]
