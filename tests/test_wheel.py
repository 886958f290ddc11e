"""The installed wheel carries the templates and works from any directory."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_renders_the_golden_bundle(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("gen_bundle-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "generator/templates/start.bat.j2" in names
    assert not any(name.startswith(("tests/", "templates/")) for name in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [str(venv / "bin" / "gen-bundle"), "--ip", "127.0.0.13", "--name", "py"],
        cwd=elsewhere, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr
    golden = REPO / "tests" / "golden" / "py"
    assert {p.name: p.read_bytes() for p in (elsewhere / "out").iterdir()} == {
        p.name: p.read_bytes() for p in golden.iterdir()
    }
    listing = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json", "--exclude", "pip", "--exclude", "setuptools"],
        capture_output=True, text=True,
    )
    installed = {entry["name"].lower() for entry in json.loads(listing.stdout)}
    assert installed == {"gen-bundle", "jinja2", "click", "markupsafe"}, installed
