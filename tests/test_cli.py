"""The command line: refusals, the output directory, --help, --version."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from generator import __version__
from generator.cli import main

from conftest import CANONICAL, REPO

OK = ["--ip", "127.0.0.13", "--name", "py"]


def run(*args: str, out: Path):
    return CliRunner().invoke(main, [*args, "--out", str(out)])


def snapshot(root: Path) -> dict[str, object]:
    """Everything a refusal must leave as it was: names, kinds, bytes, times."""
    if not root.exists():
        return {}
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        data = path.read_bytes() if path.is_file() else None
        state[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, data)
    state["."] = root.lstat().st_mtime_ns
    return state


REFUSALS = [
    # (flag, value, words the message must hold)
    ("--ip", "10.1.2.3", "loopback"),
    ("--ip", "::1", "IPv4"),
    ("--ip", "localhost", "IPv4"),
    ("--ip", "127.0.0.13;x", "IPv4"),
    ("--ip", "127.0.0.0", "network or broadcast"),
    ("--ip", "127.255.255.255", "network or broadcast"),
    ("--ip", "127.0.0.256", "0-255"),
    ("--ip", "127.0.0.013", "IPv4"),
    ("--ip", "127.1", "IPv4"),
    ("--ip", " 127.0.0.13", "IPv4"),
    ("--name", "localhost", "reserved"),
    ("--name", "12345", "all digits"),
    ("--name", "-py", "DNS label"),
    ("--name", "py-", "DNS label"),
    ("--name", "py.local", "DNS label"),
    ("--name", "p_y", "DNS label"),
    ("--name", "a" * 64, "DNS label"),
    ("--name", "", "DNS label"),
    ("--name", "pé", "U+00E9 is not ASCII"),
    ("--port", "0", "1 to 65535"),
    ("--port", "65536", "1 to 65535"),
    ("--port", "-1", "1 to 65535"),
    ("--port", "eighty", "1 to 65535"),
    ("--notebook-dir", 'C:\\a"b', "does not allow"),
    ("--notebook-dir", "C:\\a<b", "does not allow"),
    ("--notebook-dir", "C:\\a>b", "does not allow"),
    ("--notebook-dir", "C:\\a|b", "does not allow"),
    ("--notebook-dir", "C:\\a?b", "does not allow"),
    ("--notebook-dir", "C:\\a*b", "does not allow"),
    ("--notebook-dir", "C:\\a\nb", "U+000A"),
    ("--notebook-dir", "C:\\a\tb", "U+0009"),
    ("--notebook-dir", "C:\\a\x1bb", "U+001B"),
    ("--notebook-dir", "Notebooks", "absolute"),
    ("--notebook-dir", "C:/Notebooks", "absolute"),
    ("--notebook-dir", "C:\\a/b", "backslashes"),
    ("--notebook-dir", "C:\\a:b", "drive letter"),
    ("--notebook-dir", "C:\\CON\\x", "reserved device"),
    ("--notebook-dir", "C:\\a\\..\\b", "'..'"),
    ("--notebook-dir", "C:\\a \\b", "ends in a space"),
    ("--notebook-dir", "%TEMP%\\x", "may start only with"),
    ("--notebook-dir", "\\\\?\\C:\\x", "UNC"),
    ("--notebook-dir", "C:\\" + "x" * 300, "MAX_PATH"),
    ("--python", "C:\\Python313\\python", ".exe"),
    ("--python", "C:\\Py|thon\\python.exe", "does not allow"),
    ("--auth", "password", "must be one of"),
    ("--auth", "", "must be one of"),
    ("--window", "visible", "must be one of"),
    ("--scope", "everyone", "must be one of"),
    ("--user", "CONTOSO\\alice", "goes with --scope user only"),
]


USER_REFUSALS = [
    (None, "needs --user"),
    ("alice", "DOMAIN\\name"),
    ("CONTOSO\\al@ice", "cannot hold"),
    ("CONTOSO\\a:b", "cannot hold"),
    ("CONTOSO\\alice.", "cannot hold"),
    ("CONTOSO\\a$(x)", "cannot hold"),
    ("-bad\\alice", "DOMAIN\\name"),
]


@pytest.mark.parametrize("user,words", USER_REFUSALS)
def test_scope_user_refusals(tmp_path, user, words):
    out = tmp_path / "out"
    args = [*OK, "--scope", "user"] + (["--user", user] if user is not None else [])
    result = run(*args, out=out)
    assert result.exit_code == 2, result.output
    assert "'--user'" in result.stderr and words in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("flag,value,words", REFUSALS, ids=[f"{f}={v!r}"[:40] for f, v, _ in REFUSALS])
@pytest.mark.parametrize("state", ["missing", "previous-bundle"])
def test_refusal_exits_2_names_value_and_rule_and_writes_nothing(tmp_path, flag, value, words, state):
    out = tmp_path / "out"
    if state == "previous-bundle":
        assert run(*OK, out=out).exit_code == 0
    before = snapshot(tmp_path)
    args = list(OK)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    result = run(*args, "--force", out=out)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Error: Invalid value for" in result.stderr and f"'{flag}'" in result.stderr
    assert words in result.stderr
    shown = f"'{value}'" if value.isprintable() else repr(value)
    assert f"Error: Invalid value for '{flag}': {shown}: " in result.stderr
    assert snapshot(tmp_path) == before


def assert_write_error(result, path: Path, *words: str) -> None:
    """A refused or failed write: exit 1, nothing on stdout, one ``Error: `` message on
    stderr that names the path (--out, or the part of it at fault) and any further words."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: "), result.stderr
    assert str(path) in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_foreign_files_are_never_overwritten_even_with_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.docx").write_bytes(b"years of work")
    before = snapshot(tmp_path)
    for extra in ([], ["--force"]):
        result = run(*OK, *extra, out=out)
        assert_write_error(result, out, "did not write")
        assert snapshot(tmp_path) == before


def test_a_bundle_with_an_extra_file_counts_as_foreign(tmp_path):
    out = tmp_path / "out"
    assert run(*OK, out=out).exit_code == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    assert_write_error(run(*OK, "--force", out=out), out, "did not write")
    assert snapshot(tmp_path) == before


def test_previous_bundle_is_replaced_only_with_force(tmp_path):
    out = tmp_path / "out"
    assert run(*OK, out=out).exit_code == 0
    before = snapshot(tmp_path)
    refused = run("--ip", "127.0.0.14", "--name", "lab", out=out)
    assert_write_error(refused, out, "--force")
    assert snapshot(tmp_path) == before
    replaced = run("--ip", "127.0.0.14", "--name", "lab", "--force", out=out)
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "README.md",
            "SHA256SUMS",
            "bundle.json",
            "detect.ps1",
            f"gen-bundle-{__version__}.psm1",
            "hosts.txt",
            "install.ps1",
            "lab.broker.py",
            "lab.broker.task.xml",
            "lab.task.xml",
            "start-lab.bat",
            "start-lab.config.py",
            "start-lab.guard.py",
            "start-lab.launcher.py",
            "uninstall.ps1",
        ]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging directories left behind


def test_an_empty_directory_is_filled(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(*OK, out=empty).exit_code == 0
    assert (empty / "start-py.bat").is_file()


def test_a_file_given_as_out_is_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    before = snapshot(tmp_path)
    assert_write_error(run(*OK, out=a_file), a_file, "not a directory")
    assert snapshot(tmp_path) == before


def test_an_out_below_a_file_is_an_error_not_a_traceback(tmp_path):
    """A real OSError from the file system (the parent 'folder' is a file); the
    message names that file (or the whole --out, which holds it)."""
    a_file = tmp_path / "file"
    a_file.write_text("x")
    out = a_file / "sub" / "out"
    before = snapshot(tmp_path)
    assert_write_error(run(*OK, out=out), a_file)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("state", ["new-folders", "previous-bundle"])
def test_a_failed_write_leaves_no_trace(tmp_path, monkeypatch, state):
    """The last step (the rename into place) fails: exit 1, ``Error: ...``, and
    the tree as it was - no bundle, no staging folder, no parent folders made."""
    import errno

    if state == "previous-bundle":
        out = tmp_path / "out"
        assert run(*OK, out=out).exit_code == 0
        extra = ["--force"]
    else:
        out = tmp_path / "new" / "deeper" / "out"
        extra = []
    before = snapshot(tmp_path)
    names_before = sorted(p.name for p in tmp_path.iterdir())

    def broken_rename(src, dst):
        raise OSError(errno.ENOSPC, "disk full")

    monkeypatch.setattr(os, "rename", broken_rename)
    result = run(*OK, *extra, out=out)
    monkeypatch.undo()
    assert_write_error(result, out, "disk full")
    after = snapshot(tmp_path)
    del before["."], after["."]  # the parent held a staging directory for a moment
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == names_before


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE of a child process")
def test_a_write_cut_short_by_the_file_size_limit_leaves_no_trace(tmp_path):
    """A real failed write, no monkeypatching: ``python -m generator`` under a file-size
    limit smaller than install.ps1 gets EFBIG part-way through the staging folder."""
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    out = tmp_path / "new" / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "generator", *OK, "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=small_files,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: ") and str(out) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_name_is_written_lowercase(tmp_path):
    out = tmp_path / "out"
    assert run("--ip", "127.0.0.13", "--name", "PyLab", out=out).exit_code == 0
    assert (out / "start-pylab.bat").is_file()
    assert b"127.0.0.13 pylab\r\n" in (out / "hosts.txt").read_bytes()


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"gen-bundle {__version__}\n"


def help_text() -> str:
    result = CliRunner().invoke(main, ["--help"], prog_name="gen-bundle")
    assert result.exit_code == 0
    return result.output


def test_readme_cli_reference_matches_help():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- cli-help -->\n```text\n(.*?)```\n", readme, re.S)
    assert match, "README.md has no <!-- cli-help --> block"
    assert match.group(1) == help_text(), "README's CLI reference is stale: paste `gen-bundle --help`"


def test_help_shows_examples():
    text = help_text()
    assert "gen-bundle --ip 127.0.0.13 --name py\n" in text
    for flag in ("--ip", "--name", "--port", "--notebook-dir", "--python", "--out", "--force", "--version"):
        assert flag in text


def test_python_dash_m_generator_runs_from_another_directory(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "generator", "--ip", "127.0.0.13", "--name", "py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    golden = REPO / "tests" / "golden" / "py"
    written = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert sorted(written) == sorted(p.name for p in golden.iterdir())
    different = [name for name in sorted(written) if written[name] != (golden / name).read_bytes()]
    assert different == [], f"differ from tests/golden/py/ (see test_golden.py): {different}"
    bad = subprocess.run(
        [sys.executable, "-m", "generator", "--ip", "10.0.0.1", "--name", "py", "--out", "x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "Error: Invalid value for '--ip': '10.0.0.1'" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_the_auth_help_says_when_the_secret_is_made():
    """The server's settings make a new secret at every start (start-py.config.py): the help,
    which the README pastes, says so, not "on first start"."""
    text = " ".join(help_text().split())
    assert "made anew at every start" in text and "first start" not in text


def test_the_group_lists_every_command_generator_commands_defines():
    """The subcommands are loaded by name (cli.COMMANDS): one defined and not listed could not be run."""
    import click

    import generator.commands as commands
    from generator.cli import COMMANDS

    defined = {name for name, value in vars(commands).items() if isinstance(value, click.Command)}
    assert defined == set(COMMANDS)
    result = CliRunner().invoke(main, ["--help"])
    assert [line.split()[0] for line in result.stdout.split("Commands:\n")[1].split("\n\n")[0].splitlines()] == sorted(
        COMMANDS
    )


# ---- messages that name what the user typed, or where the bad value sits ----


def test_bare_gen_bundle_shows_what_it_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [], prog_name="gen-bundle")
    assert result.exit_code == 2
    assert "Render a Windows deployment bundle" in result.stderr and "--ip" in result.stderr
    assert "Missing option" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_empty_out_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--ip", "127.0.0.13", "--name", "py", "--out", ""])
    assert result.exit_code == 2
    assert "Error: Invalid value for '--out': '': must name a folder" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_bad_value_in_bundle_json_is_named_there_not_as_a_flag(tmp_path):
    assert run("--ip", "127.0.0.13", "--name", "py", out=tmp_path / "a").exit_code == 0
    manifest = tmp_path / "a" / "bundle.json"
    manifest.write_text(manifest.read_text().replace('"port": 80', '"port": 99999'))
    result = CliRunner().invoke(main, ["--from", str(manifest), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert f"Invalid value for 'port' in {manifest}: 99999: must be a TCP port number" in result.stderr
    assert "'--port'" not in result.stderr
    assert not (tmp_path / "b").exists()


def test_check_and_diff_say_a_folder_without_bundle_json_is_not_a_bundle(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["check", str(empty)], ["diff", str(empty), str(empty)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2
        assert f"{empty} is not a bundle: it holds no bundle.json" in result.stderr, result.stderr


def test_diff_says_an_input_not_set_as_such_not_none(tmp_path):
    assert run("--ip", "127.0.0.13", "--name", "py", out=tmp_path / "a").exit_code == 0
    assert (
        run(
            "--ip", "127.0.0.13", "--name", "py", "--scope", "user", "--user", "CONTOSO\\alice", out=tmp_path / "b"
        ).exit_code
        == 0
    )
    result = CliRunner().invoke(main, ["diff", str(tmp_path / "a"), str(tmp_path / "b")])
    assert "input user: (not set) -> CONTOSO\\alice" in result.output
    assert "None" not in result.output


def test_help_names_every_file_a_bundle_holds():
    """--help says what a bundle holds: every file of a bundle, with and without --env, falls under
    one of its words, and it counts the tasks right."""
    from generator.render import bundle_files
    from generator.spec import build_spec

    said = " ".join(help_text().split("Options:")[0].split())
    kinds = {  # a file, by how its name ends, and the words of --help that cover it
        ".task.xml": "Task Scheduler tasks",
        ".psm1": "the engine module",
        ".bat": ".bat",
        ".py": "Python scripts",
        "hosts.txt": "the hosts-file lines",
        "python-env.zip": "the environment's archive",
        "sbom.cdx.json": "SBOM",
    }
    problems = []
    for spec in (build_spec(**CANONICAL), build_spec(**CANONICAL, env=True, python_version="3.13")):
        files = bundle_files(spec)
        for name in files:
            words = next((words for end, words in kinds.items() if name.endswith(end)), name.removesuffix(".md"))
            if words not in said:
                problems.append(f"--help does not name {name} ({words!r})")
        tasks = sum(name.endswith(".task.xml") for name in files)
        if f"{['no', 'one', 'two', 'three'][tasks]} Task Scheduler tasks" not in said:
            problems.append(f"--help does not say the bundle has {tasks} tasks")
    assert problems == []
