"""The canonical bundle, byte for byte.

After an intended change to a template, regenerate with
``GEN_BUNDLE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py``: the
golden test then rewrites tests/golden/py/ (and templates/engine/values.ps1,
the engine source's copy of the values) and reports itself *skipped*, as
that run verified nothing. Review the diff of tests/golden/ like any other
change, then run the tests again without the variable. Under CI (CI=true)
the variable is refused: the test fails and writes nothing.

The task XML is UTF-16LE; for a readable ``git diff`` of it, once per clone:
``git config diff.utf16.textconv "iconv -f UTF-16 -t UTF-8"``
(.gitattributes names the driver; git takes the command only from config).

GEN_BUNDLE_GOLDEN_DIR points the golden test at another folder (the test of
the CI refusal uses a copy); by default it is tests/golden/py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from generator.cli import main

from conftest import IN_CI, REPO, need

DEFAULT_GOLDEN = Path(__file__).parent / "golden" / "py"
GOLDEN = Path(os.environ.get("GEN_BUNDLE_GOLDEN_DIR") or DEFAULT_GOLDEN)
UPDATE = os.environ.get("GEN_BUNDLE_UPDATE_GOLDEN") == "1"
CANONICAL_ARGS = ["--ip", "127.0.0.13", "--name", "py"]
REFUSAL = "refusing to update golden files in CI"


def test_canonical_command_writes_the_golden_bundle(tmp_path):
    if UPDATE and IN_CI:
        pytest.fail(f"GEN_BUNDLE_UPDATE_GOLDEN=1 with CI=true: {REFUSAL}; regenerate locally and review the diff")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [*CANONICAL_ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.iterdir():
            old.unlink()
        for name, data in written.items():
            (GOLDEN / name).write_bytes(data)
        pytest.skip(
            f"GEN_BUNDLE_UPDATE_GOLDEN=1: rewrote {GOLDEN}; nothing was verified - review the diff, rerun without it"
        )
    golden = {p.name: p.read_bytes() for p in sorted(GOLDEN.iterdir())}
    assert sorted(written) == sorted(golden)
    for name in golden:
        assert written[name] == golden[name], f"{name} differs from {GOLDEN / name}"


def test_same_inputs_give_byte_identical_bundles(tmp_path):
    runs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt / "out"
        assert CliRunner().invoke(main, [*CANONICAL_ARGS, "--out", str(out)]).exit_code == 0
        runs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert runs[0] == runs[1]


def test_the_engine_sources_values_are_written_from_the_generator():
    """templates/engine/values.ps1, which Import-Module of the engine's source loads in place of
    the built engine's values, is written from generator/constants.py: the update rewrites it too."""
    from generator import __version__
    from generator.engine_source import values_file

    values = REPO / "templates" / "engine" / "values.ps1"
    expected = values_file(__version__)
    if UPDATE and IN_CI:
        pytest.fail(f"GEN_BUNDLE_UPDATE_GOLDEN=1 with CI=true: {REFUSAL}; regenerate locally and review the diff")
    if UPDATE and values.read_text(encoding="utf-8") != expected:
        values.write_text(expected, encoding="utf-8", newline="\n")
        pytest.skip(f"GEN_BUNDLE_UPDATE_GOLDEN=1: rewrote {values}; nothing was verified - review the diff")
    assert values.read_text(encoding="utf-8") == expected, (
        f"{values} is stale: rewrite it with GEN_BUNDLE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py"
    )


# --- the update switch itself --------------------------------------------------


def state(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def stale_copy(tmp_path: Path) -> Path:
    """A copy of the golden folder that an update would change: one extra file, one changed."""
    copy = tmp_path / "golden"
    shutil.copytree(DEFAULT_GOLDEN, copy)
    (copy / "stale.txt").write_bytes(b"left by an old bundle\n")
    (copy / "hosts.txt").write_bytes(b"stale\r\n")
    return copy


def run_golden_test(copy: Path, *, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "GEN_BUNDLE_UPDATE_GOLDEN")}
    env.update(GEN_BUNDLE_UPDATE_GOLDEN="1", GEN_BUNDLE_GOLDEN_DIR=str(copy))
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rsf",
            "-p",
            "no:cacheprovider",
            "tests/test_golden.py::test_canonical_command_writes_the_golden_bundle",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ci_refuses_to_update_the_golden_files(tmp_path):
    copy = stale_copy(tmp_path)
    before, golden_before = state(copy), state(DEFAULT_GOLDEN)
    proc = run_golden_test(copy, ci=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # 1: the test ran and failed
    assert "1 failed" in proc.stdout and REFUSAL in proc.stdout, proc.stdout
    assert state(copy) == before
    assert state(DEFAULT_GOLDEN) == golden_before


def test_update_outside_ci_rewrites_then_skips(tmp_path):
    """The control for the refusal above: without CI=true the same run does write."""
    copy = stale_copy(tmp_path)
    proc = run_golden_test(copy, ci=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "nothing was verified" in proc.stdout, proc.stdout
    out = tmp_path / "out"
    assert CliRunner().invoke(main, [*CANONICAL_ARGS, "--out", str(out)]).exit_code == 0
    assert {name: data for name, (_, data) in state(copy).items()} == {p.name: p.read_bytes() for p in out.iterdir()}


# --- git: byte-exact golden files, readable diffs of the UTF-16 task XML ------------

GOLDEN_FILES = sorted(p.name for p in DEFAULT_GOLDEN.iterdir())
TEXTCONV = "iconv -f UTF-16 -t UTF-8"


def git(*args: str, cwd: Path = REPO) -> str:
    """git with no user or system config: only the repository's own files count."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return proc.stdout


@pytest.fixture(scope="module")
def work_tree():
    need(shutil.which("git"), "git")
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=REPO, capture_output=True, text=True)
    need(inside.returncode == 0 and inside.stdout.strip() == "true", f"{REPO} as a git work tree")
    return REPO


def check_attr(attribute: str, paths: list[str]) -> dict[str, str]:
    """``git check-attr`` for each path: path -> value (set, unset, unspecified or a string)."""
    lines = git("check-attr", "-z", attribute, "--", *paths).split("\0")
    return {lines[i]: lines[i + 2] for i in range(0, len(lines) - 2, 3)}


def test_golden_task_xml_has_the_utf16_diff_driver(work_tree):
    assert check_attr("diff", ["tests/golden/py/py.task.xml"]) == {"tests/golden/py/py.task.xml": "utf16"}


def test_golden_files_are_never_converted_by_git(work_tree):
    paths = [f"tests/golden/py/{name}" for name in GOLDEN_FILES]
    assert check_attr("text", paths) == dict.fromkeys(paths, "unset")
    assert check_attr("eol", paths) == dict.fromkeys(paths, "unspecified")
    # The attributes can be wrong: a path outside tests/golden/ is not protected.
    assert check_attr("text", ["templates/start.bat.j2"]) == {"templates/start.bat.j2": "set"}


def test_the_diff_driver_makes_a_readable_diff(work_tree, tmp_path):
    """In a scratch repository with this .gitattributes: with the config line of the
    docstring the diff shows the changed XML line; without it, git calls the file binary."""
    need(shutil.which("iconv"), "iconv")
    scratch = tmp_path / "repo"
    task = scratch / "tests" / "golden" / "py" / "py.task.xml"
    task.parent.mkdir(parents=True)
    shutil.copy(REPO / ".gitattributes", scratch / ".gitattributes")
    original = (DEFAULT_GOLDEN / "py.task.xml").read_bytes()
    task.write_bytes(original)
    quiet = ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
    git("init", "-q", cwd=scratch)
    git("add", ".", cwd=scratch)
    git(*quiet, "commit", "-q", "-m", "golden", cwd=scratch)
    changed = original.decode("utf-16").replace("<Author>gen-bundle</Author>", "<Author>someone else</Author>")
    assert changed != original.decode("utf-16")
    task.write_bytes(b"\xff\xfe" + changed.encode("utf-16-le"))
    readable = git("-c", f"diff.utf16.textconv={TEXTCONV}", "diff", cwd=scratch).splitlines()
    assert "-    <Author>gen-bundle</Author>" in readable, readable
    assert "+    <Author>someone else</Author>" in readable, readable
    assert "Binary files" in git("diff", cwd=scratch)
