"""The launcher, run by wine's cmd.exe as the logon task runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from generator.render import render
from generator.spec import build_spec

from conftest import need
from support.wine import WINE_OEM_CODEPAGE


def expected_argv(spec, python_exe: str, notebook_dir: str) -> list[str]:
    """What python.exe must receive: the command line the launcher promises."""
    return [
        python_exe,
        "-m",
        "notebook",
        "--no-browser",
        f"--ServerApp.ip={spec.ip}",
        f"--ServerApp.port={spec.port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={notebook_dir}",
        f"--ServerApp.local_hostnames={spec.name}",
        f"--ServerApp.custom_display_url={spec.url}",
    ]


def as_wine_reads(text: str) -> str:
    """Wine's cmd decodes the UTF-8 file in its OEM code page (no chcp 65001)."""
    return text.encode("utf-8").decode(WINE_OEM_CODEPAGE)


def install_launcher(wine, spec) -> str:
    """Put the launcher where install.ps1 puts it, and the stub where --python points."""
    files = render(spec)
    bat_windows = wine.expand(str(spec.launcher_path))
    bat_host = wine.host_path(bat_windows)
    bat_host.parent.mkdir(parents=True, exist_ok=True)
    bat_host.write_bytes(files[spec.launcher_file])
    wine.install_stub(as_wine_reads(wine.expand(str(spec.python))))
    return bat_windows


def run_launcher(wine, spec, stub_exit=0):
    nb_dir = as_wine_reads(wine.expand(str(spec.notebook_dir)))
    host_nb = wine.host_path(nb_dir)
    if host_nb.exists() and host_nb != wine.drive_c:  # start from a missing folder
        shutil.rmtree(host_nb)
    log_dir = wine.host_path(wine.expand(str(spec.log_dir)))
    if log_dir.exists():
        shutil.rmtree(log_dir)
    bat = install_launcher(wine, spec)
    result = wine.run_bat(bat, stub_exit=stub_exit)
    return result, nb_dir, host_nb, log_dir


@pytest.mark.wine
def test_canonical_launcher_starts_the_server_with_the_intended_command_line(wine):
    spec = build_spec(ip="127.0.0.13", name="py")
    result, nb_dir, host_nb, log_dir = run_launcher(wine, spec, stub_exit=7)
    assert result.argv_records == [
        expected_argv(spec, wine.expand(str(spec.python)), nb_dir)
    ], result.output
    assert result.exit_code == 7  # the server's exit code reaches the task
    assert host_nb.is_dir()  # root_dir is created when missing
    log = (log_dir / "server.log").read_text(encoding="utf-8", errors="replace")
    assert "stub python.exe: started" in log and "stub python.exe: stderr line" in log


HOSTILE_DIRS = [
    r"C:\Data\50% off & more (v2) ^caret !bang 'quote'",
    r"C:\Users\Public\%USERPROFILE% is literal here",
    r"C:\a;b,c=d`e~f@g#h$i{j}k[l]m+n",
    "C:\\Zoë\\Ünïcödé ‘curly’ 日本",
    "C:\\",
]


@pytest.mark.wine
@pytest.mark.parametrize("notebook_dir", HOSTILE_DIRS)
def test_hostile_paths_reach_python_unchanged(wine, notebook_dir):
    python = r"C:\Tools & Co\Python 3 (x64) 100%\python.exe"
    spec = build_spec(ip="127.0.0.42", name="lab-1", port=8080, notebook_dir=notebook_dir, python=python)
    result, nb_dir, host_nb, _ = run_launcher(wine, spec)
    assert result.exit_code == 0, result.output
    assert result.argv_records == [expected_argv(spec, python, nb_dir)], result.output
    assert host_nb.is_dir()


def blinter_errors(tmp_path, name: str, data: bytes) -> list[dict]:
    bat = tmp_path / name
    bat.write_bytes(data)
    report = tmp_path / (name + ".json")
    proc = subprocess.run(
        [sys.executable, "-m", "blinter", str(bat), "--no-config", "--format", "json", "--output", str(report)],
        capture_output=True,
        text=True,
    )
    need(report.exists(), f"blinter's report (python -m blinter: {proc.stderr.strip()[:200]})")
    return [issue for issue in json.loads(report.read_text())["issues"] if issue["severity"] == "Error"]


def test_blinter_finds_no_errors(canonical_files, tmp_path):
    assert blinter_errors(tmp_path, "start-py.bat", canonical_files["start-py.bat"]) == []


def test_blinter_would_see_a_broken_launcher(tmp_path):
    broken = b"@echo off\r\ngoto nowhere\r\n"
    assert [issue["code"] for issue in blinter_errors(tmp_path, "broken.bat", broken)] == ["E002"]
