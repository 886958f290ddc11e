"""Each file in the byte form the Windows program that reads it expects."""

from __future__ import annotations

import hashlib
import json

import pytest

CRLF_FILES = [
    "start-py.bat",
    "start-py.launcher.py",
    "start-py.config.py",
    "start-py.guard.py",
    "py.broker.py",
    "install.ps1",
    "uninstall.ps1",
    "detect.ps1",
    "hosts.txt",
    "py.task.xml",
    "py.broker.task.xml",
]


def text_of(name: str, data: bytes) -> str:
    if name.endswith(".xml"):
        return data[2:].decode("utf-16-le")
    return data.decode("utf-8-sig")


@pytest.mark.parametrize("name", CRLF_FILES)
def test_crlf_line_endings_only(canonical_files, name):
    text = text_of(name, canonical_files[name])
    assert text.endswith("\r\n")
    assert text.count("\n") == text.count("\r\n") > 0
    assert text.count("\r") == text.count("\r\n")


@pytest.mark.parametrize("name", ["install.ps1", "uninstall.ps1", "detect.ps1"])
def test_powershell_is_utf8_with_bom(canonical_files, name):
    data = canonical_files[name]
    assert data.startswith(b"\xef\xbb\xbf")
    data[3:].decode("utf-8")  # strict


def test_launcher_has_no_bom_and_switches_to_utf8_before_any_value(canonical_files):
    data = canonical_files["start-py.bat"]
    assert data.startswith(b"@echo off\r\n")
    lines = data.split(b"\r\n")
    chcp = lines.index(b'"%SystemRoot%\\System32\\chcp.com" 65001 >nul')
    assert all(line.isascii() for line in lines[: chcp + 1])


def test_hosts_snippet_is_ascii_marked_block(canonical_files):
    data = canonical_files["hosts.txt"]
    assert data.isascii()
    assert data == b"# BEGIN gen-bundle py\r\n127.0.0.13 py\r\n# END gen-bundle py\r\n"


def test_sha256sums_covers_every_other_file(canonical_files, tmp_path):
    lines = canonical_files["SHA256SUMS"].decode("ascii").splitlines()
    sums = {line[66:]: line[:64] for line in lines}
    assert all(line[64:66] == "  " for line in lines)
    assert set(sums) == set(canonical_files) - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256(canonical_files[name]).hexdigest() == digest


def test_sha256sum_c_accepts_the_written_bundle(canonical_files, tmp_path):
    import shutil
    import subprocess

    from conftest import need

    need(shutil.which("sha256sum"), "coreutils sha256sum")
    for name, data in canonical_files.items():
        (tmp_path / name).write_bytes(data)
    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (tmp_path / "hosts.txt").write_bytes(b"127.0.0.1 py\r\n")
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path, capture_output=True).returncode


def test_bundle_json_records_inputs_version_and_files(canonical_files):
    from generator import __version__

    manifest = json.loads(canonical_files["bundle.json"])
    engine = f"gen-bundle-{__version__}.psm1"
    assert manifest == {
        "generator": "gen-bundle",
        "schema": 2,
        "version": __version__,
        "inputs": {
            "ip": "127.0.0.13",
            "name": "py",
            "port": 80,
            "notebook_dir": "%USERPROFILE%\\Notebooks",
            "python": "%ProgramFiles%\\Python313\\python.exe",
            "auth": "token",
            "window": "hidden",
            "scope": "machine",
            "user": None,
        },
        "engine": {"file": engine, "sha256": hashlib.sha256(canonical_files[engine]).hexdigest()},
        "files": sorted(canonical_files),
    }
    assert list(manifest) == ["generator", "schema", "version", "inputs", "engine", "files"]


def test_bundle_json_inputs_rebuild_the_same_bundle(canonical_files):
    from generator.render import render
    from generator.spec import build_spec

    inputs = json.loads(canonical_files["bundle.json"])["inputs"]
    assert render(build_spec(**inputs)) == canonical_files


def test_server_config_is_python_that_compiles(canonical_files):
    from conftest import python_constants

    constants = python_constants(canonical_files["start-py.config.py"])
    assert constants["NAME"] == "py" and constants["URL"] == "http://py/" and constants["AUTH"] == "token"
