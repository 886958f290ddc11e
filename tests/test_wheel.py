"""The packages as they are published: the sdist, and the wheel built from it (as
pip builds one from an sdist). Both carry the licence; the wheel carries the
templates and py.typed, declares pyproject's dependency floors, and, installed
in a fresh venv, works from any directory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

pytestmark = pytest.mark.slow

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LICENSE = (REPO / "LICENSE").read_bytes()


def templates() -> dict[str, bytes]:
    """templates/ as the wheel must carry it, by path relative to templates/."""
    root = REPO / "templates"
    found = {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "start.bat.j2" in found
    return found


def requirement(text: str) -> str:
    """One spelling for a requirement: `Jinja2 >= 3.1` and `jinja2>=3.1` are the same."""
    req = Requirement(text)
    req.name = canonicalize_name(req.name)
    return str(req)


def floors(requirements: list[str]) -> dict[str, str]:
    """name -> the version after `>=`, for requirements without a marker (the runtime ones)."""
    found = {}
    for text in requirements:
        req = Requirement(text)
        if req.marker is None:
            (floor,) = [spec.version for spec in req.specifier if spec.operator == ">="]
            found[canonicalize_name(req.name)] = floor
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The sdist and the wheel built from it, by the standard front end."""
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (sdist,) = dist.glob("gen_bundle-*.tar.gz")
    (wheel,) = dist.glob("gen_bundle-*.whl")
    return sdist, wheel


def wheel_metadata(wheel: Path) -> tuple[set[str], str, Message]:
    """The wheel's file names, its .dist-info folder, and its METADATA."""
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        (dist_info,) = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
        metadata = HeaderParser().parsestr(whl.read(f"{dist_info}/METADATA").decode("utf-8"))
    return names, dist_info, metadata


def test_sdist_carries_the_license_and_the_sources(built):
    sdist, _ = built
    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
        (root,) = {name.split("/")[0] for name in names}
        assert tar.extractfile(f"{root}/LICENSE").read() == LICENSE
        pkg_info = HeaderParser().parsestr(tar.extractfile(f"{root}/PKG-INFO").read().decode("utf-8"))
    assert pkg_info["License-Expression"] == PROJECT["license"]
    assert pkg_info.get_all("License-File") == ["LICENSE"]
    assert f"{root}/generator/py.typed" in names
    assert {f"{root}/templates/{name}" for name in templates()} <= names


def test_wheel_carries_the_templates_py_typed_and_the_license(built):
    _, wheel = built
    names, dist_info, metadata = wheel_metadata(wheel)
    with zipfile.ZipFile(wheel) as whl:
        for name, data in templates().items():
            assert f"generator/templates/{name}" in names, f"the wheel lacks templates/{name}"
            assert whl.read(f"generator/templates/{name}") == data, name
        assert whl.read(f"{dist_info}/licenses/LICENSE") == LICENSE
    assert "generator/py.typed" in names  # PEP 561: type checkers use the package's annotations
    assert metadata["License-Expression"] == PROJECT["license"]
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert not any(name.startswith(("tests/", "templates/", "benchmarks/")) for name in names)


def test_wheel_carries_the_templates_compiled(built):
    """Compiled at build time for each output language, with the jinja2 version that compiled them."""
    _, wheel = built
    names, _, _ = wheel_metadata(wheel)
    with zipfile.ZipFile(wheel) as whl:
        source = whl.read("generator/compiled_templates.py").decode()
    assert "generator/compiled_templates.py" in names
    assert re.search(r"^JINJA_VERSION = '3\.[0-9.]+'$", source, re.M)
    for language in ("bat", "hosts", "md", "ps", "py", "xml"):
        assert f"'{language}': {{" in source, language


def test_wheel_requires_what_pyproject_declares_with_its_floors(built):
    _, wheel = built
    _, _, metadata = wheel_metadata(wheel)
    requires = metadata.get_all("Requires-Dist") or []
    declared = list(PROJECT["dependencies"]) + [
        f"{text}; extra == '{extra}'" for extra, texts in PROJECT["optional-dependencies"].items() for text in texts
    ]
    assert sorted(map(requirement, requires)) == sorted(map(requirement, declared))
    # Each runtime dependency has one floor, which .ci/run installs and tests.
    assert floors(requires) == floors(PROJECT["dependencies"])
    assert set(floors(requires)) == {"click", "jinja2"}


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed, as a user installs it."""
    _, wheel = built
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    return venv


def test_wheel_in_a_fresh_venv_renders_the_golden_bundle(venv, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [str(venv / "bin" / "gen-bundle"), "--ip", "127.0.0.13", "--name", "py"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr
    # ... from the templates the wheel carries compiled: no run compiles one.
    used = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from generator.compiled import compiled_loader; print(all(compiled_loader(l) for l in "
            "('bat', 'hosts', 'md', 'ps', 'py', 'xml')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=elsewhere,  # not the checkout's generator/
    )
    assert used.stdout.strip() == "True", used.stdout + used.stderr
    golden = REPO / "tests" / "golden" / "py"
    assert {p.name: p.read_bytes() for p in (elsewhere / "out").iterdir()} == {
        p.name: p.read_bytes() for p in golden.iterdir()
    }
    listing = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "list",
            "--format",
            "json",
            "--exclude",
            "pip",
            "--exclude",
            "setuptools",
        ],
        capture_output=True,
        text=True,
    )
    installed = {entry["name"].lower() for entry in json.loads(listing.stdout)}
    assert installed == {"gen-bundle", "jinja2", "click", "markupsafe"}, installed


def imported(python: Path, code: str, cwd: Path) -> set[str]:
    """The modules a Python run of ``code`` imports, as -X importtime lists them."""
    run = subprocess.run([str(python), "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=cwd)
    assert run.returncode == 0, run.stderr
    return {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}


# What a canonical run imports beyond jinja2 and click: the task file's UTF-16 codec; the frozen
# dataclasses of the spec and its paths (with copy); pathlib, which the library returns (with
# ntpath, which asks for nt and _winapi); locale, which click's --version option asks gettext for.
STANDARD_MODULES_OF_A_RUN = {
    *("encodings.utf_16_le", "dataclasses", "copy", "pathlib", "ntpath", "nt", "_winapi", "locale", "_locale"),
}


def test_a_run_of_the_wheel_imports_only_its_own_modules_beyond_jinja2_and_click(venv, tmp_path):
    """benchmarks/startup.py times the run against importing jinja2 and click; what the run adds
    is gen-bundle's own modules and a few of the standard library's, each named here: a new one
    shows up as a change to this list, to be weighed against the benchmark."""
    python = venv / "bin" / "python"
    baseline = imported(python, "import jinja2, click", tmp_path)
    run = imported(
        python,
        "import sys, jinja2, click\n"
        "sys.argv = ['gen-bundle', '--ip', '127.0.0.13', '--name', 'py']\n"
        "from generator.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n",
        tmp_path,
    )
    added = {name for name in run - baseline if name.split(".")[0] != "generator"}
    assert added == STANDARD_MODULES_OF_A_RUN, " ".join(sorted(added))
    # Nor gen-bundle's own modules of other commands: the subcommands, check, diff, sign, bundle.
    assert {"generator.commands", "generator.check", "generator.bundle", "generator.precompile"}.isdisjoint(run)
    # The control: a run that asks for pathlib shows it.
    assert "pathlib" in imported(python, "import jinja2, click, pathlib", tmp_path) - baseline
