"""--env's failures: each one a clear message, its exit code, and nothing written.

The resolver is faked with pytest-subprocess (its messages are uv 0.13's own, recorded from
real runs), the index by a real HTTP server on loopback that serves other bytes than the
lock pins. No test here needs the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from generator.cli import main
from generator.environment import EnvBuildError, Target
from generator.environment.archive import install_archive
from generator.environment.lock import Pin, parse_lock

from support.index import FAKE_UV, Index

# uv's messages, line by line as it printed them (some lines are long).
UNKNOWN = """error: No solution found when resolving dependencies
  cause: Because nosuchpkg-zzq was not found in the package registry and you require nosuchpkg-zzq, \
we can conclude that your requirements are unsatisfiable.
"""
NO_WHEEL = """error: No solution found when resolving dependencies
  cause: Because pywinpty==3.0.4 has no wheels with a matching platform tag (e.g., `manylinux_2_28_x86_64`), \
we can conclude that pywinpty<=3.0.4 cannot be used.
hint: Wheels are required for `pywinpty` because building from source is disabled for all packages \
(i.e., with `--no-build`)
"""
NO_NETWORK = """error: Request failed after 3 retries in 5.5s
  cause: Failed to fetch: https://pypi.org/simple/notebook/
  cause: error sending request for url (https://pypi.org/simple/notebook/)
  cause: client error (Connect)
  cause: dns error: failed to lookup address information: Temporary failure in name resolution
"""


def run(tmp_path: Path, *flags: str):
    result = CliRunner().invoke(
        main, ["--ip", "127.0.0.13", "--name", "py", "--env", *flags, "--out", str(tmp_path / "out")]
    )
    return result


@pytest.mark.parametrize(
    ("stderr", "words"),
    [
        (UNKNOWN, "a package named in --package or --requirements does not exist on the index"),
        (NO_WHEEL, "a package has no wheel for Windows x64, CPython 3.13, and gen-bundle installs wheels only"),
        (NO_NETWORK, "the package index cannot be reached"),
    ],
    ids=["unknown-package", "no-wheel", "no-network"],
)
def test_a_failed_resolution_is_explained_and_writes_nothing(fake_uv, tmp_path, stderr, words):
    fake_uv.register([FAKE_UV, "pip", "compile", fake_uv.any()], returncode=1, stderr=stderr)
    result = run(tmp_path, "--package", "nosuchpkg-zzq")
    assert result.exit_code == 1, result.output
    assert "\nError: cannot resolve the environment for Windows x64, CPython 3.13: " in result.stderr
    assert words in result.stderr
    assert stderr.splitlines()[1].strip() in result.stderr  # uv's own reason is passed on
    assert not (tmp_path / "out").exists()
    # The resolver was asked for the target, not for this machine, and for wheels only.
    command = fake_uv.calls[0]
    assert command[command.index("--python-platform") + 1] == "x86_64-pc-windows-msvc"
    assert command[command.index("--python-version") + 1] == "3.13"
    assert command[command.index("--only-binary") + 1] == ":all:"


def lock_for(base: str, wheels: dict[str, bytes], pinned: dict[str, str] | None = None) -> str:
    """A pylock.toml pinning each named wheel (name-version-...whl) at ``base``."""
    lines = ['lock-version = "1.0"', 'created-by = "test"']
    for filename, data in wheels.items():
        name, version = filename.split("-")[:2]
        digest = (pinned or {}).get(filename) or hashlib.sha256(data).hexdigest()
        lines += [
            "[[packages]]",
            f'name = "{name}"',
            f'version = "{version}"',
            f'wheels = [{{ url = "{base}/{filename}", hashes = {{ sha256 = "{digest}" }} }}]',
        ]
    return "\n".join(lines) + "\n"


def make_wheel(name: str, version: str, files: dict[str, bytes]) -> bytes:
    info = f"{name}-{version}.dist-info"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
        wheel.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense-Expression: MIT\n"
        )
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return out.getvalue()


def test_a_wheel_that_is_not_the_locked_one_is_refused(fake_uv, tmp_path, index):
    wheels = {
        "notebook-7.6.5-py3-none-any.whl": make_wheel("notebook", "7.6.5", {"notebook/__init__.py": b""}),
        "jupyter_core-5.9.1-py3-none-any.whl": make_wheel("jupyter_core", "5.9.1", {"jupyter_core/__init__.py": b""}),
    }
    base = f"http://127.0.0.1:{index.server_port}"
    lock = lock_for(base, wheels)
    # The index now serves other bytes under the locked name: a replaced or tampered file.
    Index.files = {f"/{name}": data + b"tampered" for name, data in wheels.items()}
    fake_uv.register([FAKE_UV, "pip", "compile", fake_uv.any()], stdout=lock, occurrences=2)
    result = run(tmp_path)
    assert result.exit_code == 1, result.output
    assert "does not match its lock: SHA-256" in result.stderr
    assert "jupyter_core-5.9.1-py3-none-any.whl" in result.stderr
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").rglob("*.whl"))  # and nothing unverified was cached
    # The same lock, with the right bytes served: built, and each wheel cached by its digest.
    Index.files = {f"/{name}": data for name, data in wheels.items()}
    result = run(tmp_path)
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "cache").rglob("*.whl"))) == 2
    listing = zipfile.ZipFile(tmp_path / "out" / "python-env.zip").namelist()
    assert "Lib/site-packages/notebook/__init__.py" in listing


def test_offline_with_a_cold_cache_says_what_is_missing(fake_uv, tmp_path, index):
    wheel = make_wheel("notebook", "7.6.5", {"notebook/__init__.py": b""})
    lock_file = tmp_path / "pylock.toml"
    lock_file.write_text(
        lock_for(
            "http://127.0.0.1:9",
            {"notebook-7.6.5-py3-none-any.whl": wheel, "jupyter_core-5.9.1-py3-none-any.whl": wheel},
        )
    )
    result = run(tmp_path, "--offline", "--lock", str(lock_file))
    assert result.exit_code == 1
    assert "--offline: jupyter_core-5.9.1-py3-none-any.whl (jupyter_core 5.9.1) is not in the cache" in result.stderr
    assert len(fake_uv.calls) == 0  # with --lock, nothing is resolved
    assert not (tmp_path / "out").exists()


def test_a_lock_with_an_old_jupyter_core_is_refused(tmp_path):
    wheel = make_wheel("x", "1", {})
    lock = lock_for(
        "https://example.invalid",
        {"notebook-7.6.5-py3-none-any.whl": wheel, "jupyter_core-5.7.2-py3-none-any.whl": wheel},
    )
    lock_file = tmp_path / "pylock.toml"
    lock_file.write_text(lock)
    result = run(tmp_path, "--lock", str(lock_file), "--offline")
    assert result.exit_code == 1
    assert "pins jupyter-core 5.7.2: before 5.8.1" in result.stderr
    assert "CVE-2025-30167" in result.stderr


def test_a_lock_with_only_a_source_distribution_is_refused():
    text = (
        'lock-version = "1.0"\n[[packages]]\nname = "pkg"\nversion = "1"\n'
        'sdist = { url = "https://example.invalid/pkg-1.tar.gz", hashes = { sha256 = "' + "0" * 64 + '" } }\n'
    )
    with pytest.raises(EnvBuildError, match="pkg 1 has no wheel for Windows x64, CPython 3.13 \\(only a source"):
        parse_lock(text, Target("windows", "3.13"), source="the lock")


def test_a_lock_for_another_platform_is_refused():
    wheel = {
        "url": "https://example.invalid/pkg-1-cp313-cp313-manylinux_2_28_x86_64.whl",
        "hashes": {"sha256": "0" * 64},
    }
    text = (
        'lock-version = "1.0"\n[[packages]]\nname = "pkg"\nversion = "1"\nwheels = ['
        + json.dumps(wheel)
        .replace('": ', '" = ')
        .replace('{"', '{ "')
        .replace('"url"', "url")
        .replace('"hashes"', "hashes")
        .replace('"sha256"', "sha256")
        + "]\n"
    )
    with pytest.raises(EnvBuildError, match="has no wheel for Windows x64"):
        parse_lock(text, Target("windows", "3.13"), source="the lock")


@pytest.mark.parametrize("bad", ["../evil.py", "pkg/con.py", "pkg/a:b.py", "pkg/trailing. "])
def test_a_wheel_entry_windows_cannot_hold_or_that_escapes_is_refused(bad):
    data = make_wheel("pkg", "1", {bad: b"x"})
    pin = Pin(
        "pkg",
        "1",
        "pkg-1-py3-none-any.whl",
        "https://example.invalid/pkg-1-py3-none-any.whl",
        hashlib.sha256(data).hexdigest(),
        None,
    )
    with pytest.raises(EnvBuildError, match="is not a file name Windows can hold"):
        install_archive((pin,), {pin.sha256: data}, Target("windows", "3.13"))


def test_two_wheels_writing_one_file_are_refused():
    first = make_wheel("a", "1", {"shared/Module.py": b"a"})
    second = make_wheel("b", "1", {"shared/module.py": b"b"})  # one file on Windows, whatever the case
    pins = tuple(
        Pin(
            n,
            "1",
            f"{n}-1-py3-none-any.whl",
            f"https://example.invalid/{n}-1-py3-none-any.whl",
            hashlib.sha256(d).hexdigest(),
            None,
        )
        for n, d in (("a", first), ("b", second))
    )
    with pytest.raises(EnvBuildError, match="would overwrite each other's file"):
        wheels = {pin.sha256: d for pin, d in zip(pins, (first, second), strict=True)}
        install_archive(pins, wheels, Target("windows", "3.13"))


@pytest.mark.parametrize(
    ("flags", "flag", "words"),
    [
        (["--package", "x @ https://example.invalid/x.whl"], "--package", "no URLs, paths, options or markers"),
        (["--python-version", "3.12"], "--python-version", "contradicts --python"),
        (["--python-version", "3.9"], "--python-version", "must be a CPython version 3.10 to 3.19"),
        (
            ["--python", "%LOCALAPPDATA%\\Programs\\Python\\Python313\\python.exe"],
            "--python",
            "needs a Python installed for all users",
        ),
        (
            ["--python", "D:\\Tools\\python.exe"],
            "--python-version",
            "--python 'D:\\Tools\\python.exe' does not name it",
        ),
    ],
)
def test_bad_environment_input_exits_2_naming_the_flag(tmp_path, flags, flag, words, fp):
    result = run(tmp_path, *flags)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.stderr and words in result.stderr
    assert not (tmp_path / "out").exists()
    assert len(fp.calls) == 0  # refused before anything runs


def test_a_requirements_file_takes_only_packages(tmp_path, fp):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# the team's extras\npandas>=2  # data frames\n\n--index-url https://evil.invalid/\n")
    result = run(tmp_path, "--requirements", str(requirements))
    assert result.exit_code == 2
    assert f"'{requirements}:4: --index-url https://evil.invalid/'" in result.stderr
    assert len(fp.calls) == 0


@pytest.mark.parametrize(
    "flags", [["--lock", "pylock.toml"], ["--offline"], ["--package", "pandas"], ["--python-version", "3.13"]]
)
def test_environment_flags_need_env(tmp_path, flags):
    result = CliRunner().invoke(main, ["--ip", "127.0.0.13", "--name", "py", *flags, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "goes with --env only" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_path_too_long_for_windows_powershell_is_refused_at_build_time():
    from generator.environment.build import _check_path_length

    longest = "Lib/site-packages/" + "x" * 150 + ".py"
    _check_path_length(longest, "Lib/site-packages", "py")  # 228 characters with the staging folder: fine
    with pytest.raises(EnvBuildError, match="more than the 259 Windows PowerShell 5.1 can write. A shorter --name"):
        _check_path_length(longest, "Lib/site-packages", "n" * 63)
    folder = "Lib/site-packages/" + "x" * 176  # a folder of 251 characters, a file in it of 256
    with pytest.raises(EnvBuildError, match="more than the 247 Windows PowerShell 5.1 can create"):
        _check_path_length(folder + "/a.py", folder, "py")


def test_an_archive_past_a_zips_limit_is_refused_not_cut_short(monkeypatch):
    """write_zip stops with an error when an entry would end past 4 GiB (no zip64): it never
    leaves out the entries that do not fit and writes the rest."""
    from generator.environment import archive

    entries = [
        archive.Entry(f"Lib/site-packages/m{i}.py", 0, b"x" * 100, 0, 100, (2020, 1, 1, 0, 0, 0), "w") for i in range(3)
    ]
    assert len(zipfile.ZipFile(io.BytesIO(archive.write_zip(entries))).namelist()) == 3
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", 200)  # room for the first entry, not the second
    with pytest.raises(EnvBuildError, match="larger than 4 GiB"):
        archive.write_zip(entries)
