"""A write that fails is a message and an exit code, and leaves nothing behind."""

from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner

from generator import output
from generator.cli import main

OK = ["--ip", "127.0.0.13", "--name", "py"]


def tree(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_out_below_a_file_is_a_message_not_a_traceback(tmp_path):
    blocker = tmp_path / "passwd"
    blocker.write_text("root:x:0:0\n")
    result = CliRunner().invoke(main, [*OK, "--out", str(blocker / "out")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write the bundle below {blocker}: it is not a directory\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert tree(tmp_path) == ["passwd"]
    assert blocker.read_text() == "root:x:0:0\n"


def test_etc_passwd_out_from_the_issue(tmp_path):
    result = CliRunner().invoke(main, [*OK, "--out", "/etc/passwd/out"])
    assert result.exit_code == 1
    assert result.stderr == "Error: cannot write the bundle below /etc/passwd: it is not a directory\n"


def test_a_failed_write_removes_the_parent_folders_it_made(tmp_path, monkeypatch):
    def no_space(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(output.os, "rename", no_space)
    out = tmp_path / "a" / "b" / "out"
    result = CliRunner().invoke(main, [*OK, "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write the bundle to {out}: {os.strerror(errno.ENOSPC)}: {out}\n"
    assert tree(tmp_path) == []


def test_a_failed_write_keeps_folders_that_were_there(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("mine")

    def denied(suffix=None, prefix=None, dir=None):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))

    monkeypatch.setattr(output.tempfile, "mkdtemp", denied)
    out = tmp_path / "a" / "b" / "out"
    result = CliRunner().invoke(main, [*OK, "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot write the bundle to {out}: {os.strerror(errno.EACCES)}")
    assert tree(tmp_path) == ["a", "a/keep.txt"]


def test_made_parent_folders_stay_when_the_write_succeeds(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    result = CliRunner().invoke(main, [*OK, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert (out / "install.ps1").is_file()


def test_out_with_dot_dot_is_written_where_it_points(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [*OK, "--out", "new/x/../out"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "new" / "out" / "install.ps1").is_file()
    assert tree(tmp_path / "new") == sorted(["out", *(f"out/{p.name}" for p in (tmp_path / "new" / "out").iterdir())])


def test_an_odd_bundle_json_is_not_read_as_an_earlier_bundle(tmp_path):
    for name, make in (
        ("fifo", lambda path: os.mkfifo(path)),
        ("deep", lambda path: path.write_text("[" * 200000)),
        ("link", lambda path: path.symlink_to("/dev/zero")),
        # A key written twice: check refuses such a bundle.json, and so does the write.
        (
            "twice",
            lambda path: path.write_text(
                '{"generator": "gen-bundle", "version": "0.1.0", "inputs": {"ip": "127.0.0.13"}, '
                '"files": [], "files": ["bundle.json"]}'
            ),
        ),
    ):
        out = tmp_path / name
        out.mkdir()
        make(out / "bundle.json")
        result = CliRunner().invoke(main, [*OK, "--out", str(out), "--force"])
        assert result.exit_code == 1, name
        assert result.stderr.startswith(f"Error: {out} holds files that gen-bundle did not write"), name


def test_a_write_refused_by_the_folder_names_the_folder_asked_for_not_a_staging_one(tmp_path):
    """/proc refuses new entries: the message names --out, not gen-bundle's own staging folder."""
    result = CliRunner().invoke(main, [*OK, "--out", "/proc/x"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot write the bundle to /proc/x: ")
    assert ".x.new-" not in result.stderr and ".x.old-" not in result.stderr
    # The control: a file the user named is still named.
    assert output._reason(OSError(errno.EACCES, "Permission denied", "/srv/out/README.md"), tmp_path / "out") == (
        "Permission denied: /srv/out/README.md"
    )


def test_a_root_that_is_not_a_folder_ends_the_search_for_parents(monkeypatch):
    """On Windows, dirname('Z:\\\\') is 'Z:\\\\': an --out on a drive that does not exist (or a share
    out of reach) reaches a root that is no folder, and the search for the folders to make must
    stop there, with mkdir's error, not go round forever. Here every path plays such a root."""
    import ntpath

    from generator.errors import OutputError

    calls = []

    def dirname(path: str) -> str:
        calls.append(path)
        assert len(calls) < 50, "the search for parents does not end"
        return ntpath.dirname(path)

    monkeypatch.setattr(output.os.path, "isdir", lambda path: False)
    monkeypatch.setattr(output.os.path, "lexists", lambda path: False)
    monkeypatch.setattr(output.os.path, "dirname", dirname)

    def refuse(path: str) -> None:
        raise FileNotFoundError(errno.ENOENT, "The system cannot find the path specified", path)

    monkeypatch.setattr(output.os, "mkdir", refuse)
    created: list[str] = []
    with pytest.raises(FileNotFoundError):
        output._make_parents("Z:\\bundles\\py", created)
    assert created == []
    assert calls[-1] == "Z:\\"
    # Through write_bundle, the same is an OutputError naming --out.
    with pytest.raises(OutputError, match="cannot write the bundle to"):
        output.write_bundle({}, "Z:\\bundles\\py")


def test_a_failed_swap_puts_the_previous_bundle_back(tmp_path, monkeypatch):
    """--force over a bundle: the old folder is moved aside, the new one renamed in; when that
    second rename fails, the old bundle is renamed back, byte for byte, and no staging or retired
    folder is left. (Without the rollback rename, --out would be gone.)"""
    out = tmp_path / "out"
    assert CliRunner().invoke(main, [*OK, "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_rename = os.rename

    def refuse_the_swap_in(src, dst):
        if os.path.basename(src).startswith(".out.new-") and str(dst) == str(out):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(output.os, "rename", refuse_the_swap_in)
    result = CliRunner().invoke(main, ["--ip", "127.0.0.14", "--name", "lab", "--force", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert tree(tmp_path) == sorted(["out", *(f"out/{name}" for name in before)])


@pytest.mark.parametrize("umask,mode", [(0o022, 0o755), (0o027, 0o750)])
def test_the_bundle_folder_gets_the_mode_the_umask_gives(tmp_path, umask, mode):
    """A reviewer reads the bundle as another account: the folder is made as mkdir would make it
    under the user's umask, not with mkdtemp's 0700."""
    old = os.umask(umask)
    try:
        assert CliRunner().invoke(main, [*OK, "--out", str(tmp_path / "out")]).exit_code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == mode
