"""--env: the locked environment for Windows, resolved and downloaded for real (once per session).

What these tests hold against the real index: the resolution is for the target (Windows-only
dependencies are in), every wheel is pinned by SHA-256, the archive is laid out as the wheel
format says and is byte-identical from the same lock, and the SBOM is valid CycloneDX.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tomllib
import zipfile

import pytest
from click.testing import CliRunner

from generator.bundle_format import ENV_FILES
from generator.cli import main
from generator.environment import Target, build_environment
from generator.environment.lock import normalize, parse_lock
from generator.render import render
from generator.spec import build_spec

from conftest import CANONICAL, need

WINDOWS_ONLY = ("pywinpty", "colorama")


def pins_of(built):
    return parse_lock(built.lock.decode("ascii"), built.target, source="the bundle's lock")


def test_the_lock_is_for_windows_and_pins_every_wheel(windows_env):
    pins = pins_of(windows_env)
    names = {normalize(pin.name) for pin in pins}
    for name in (*WINDOWS_ONLY, "notebook", "jupyter-server", "jupyter-core", "pyzmq"):
        assert name in names, name
    assert "ptyprocess" not in names  # Linux's terminal backend: markers were evaluated for Windows
    assert len(pins) >= 60
    for pin in pins:
        assert len(pin.sha256) == 64 and int(pin.sha256, 16) >= 0
        assert pin.filename.endswith(".whl")
        assert pin.url.startswith("https://") and pin.url.endswith("/" + pin.filename)
        tags = pin.filename[:-4].split("-")[-1]
        assert tags in ("any", "win_amd64"), pin.filename  # no Linux or macOS wheel slipped in
    document = tomllib.loads(windows_env.lock.decode("ascii"))
    assert document["lock-version"] == "1.0" and document["requires-python"] == "==3.13.*"
    assert all(len(package["wheels"]) == 1 for package in document["packages"])


def test_the_archive_is_the_wheels_installed_as_a_virtual_environment(windows_env):
    archive = zipfile.ZipFile(io.BytesIO(windows_env.archive))
    assert archive.testzip() is None  # every entry's CRC holds: the copied data is whole
    names = archive.namelist()
    assert names == sorted(names) and len(names) == len(set(names)) == windows_env.files
    assert {name.split("/")[0] for name in names} <= {"Lib", "Scripts", "Include", "etc", "share"}
    assert any(name.startswith("Lib/site-packages/winpty/") and name.endswith(".pyd") for name in names)
    # notebook's .data/data: the front end and the server extension's settings, in the prefix
    assert any(name.startswith("share/jupyter/labextensions/") for name in names)
    assert "etc/jupyter/jupyter_server_config.d/notebook.json" in names
    assert "Lib/site-packages/notebook/__init__.py" in names
    # Each .dist-info got an installer's RECORD and INSTALLER; its RECORD names every file of it.
    info = next(name for name in names if name.startswith("Lib/site-packages/notebook-") and name.endswith("/RECORD"))
    record = archive.read(info).decode()
    assert archive.read(info.replace("RECORD", "INSTALLER")) == b"gen-bundle\n"
    assert "../../share/jupyter/labextensions/" in record and "notebook/__init__.py,sha256=" in record
    # Every file's bytes are the wheel's: RECORD's SHA-256 holds for the extracted data.
    import base64

    for line in record.splitlines()[:200]:
        path, digest, _ = line.rsplit(",", 2)
        if digest.startswith("sha256="):
            data = archive.read("Lib/site-packages/" + path if not path.startswith("../") else path[len("../../") :])
            assert base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode() == digest[7:], path


def test_the_same_lock_gives_the_same_bytes_offline(windows_env, env_cache):
    """Rebuilt from the bundle's own lock, from the warm cache, with no network allowed."""
    again = build_environment(
        requirements=("notebook",),
        target=Target("windows", "3.13"),
        cache=env_cache,
        lock=windows_env.lock.decode("ascii"),
        offline=True,
        name="py",
        generator_version="0.0.0",
    )
    assert again.archive == windows_env.archive
    assert again.lock == windows_env.lock
    assert again.sbom == windows_env.sbom


def test_the_sbom_is_valid_cyclonedx_and_names_every_package(windows_env):
    try:
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
    except ImportError:
        need(False, "cyclonedx-python-lib[json-validation] (a test dependency)")
    text = windows_env.sbom.decode("utf-8")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    pins = {normalize(pin.name): pin for pin in pins_of(windows_env)}
    assert len(document["components"]) == len(pins)
    for component in document["components"]:
        pin = pins[normalize(component["name"])]
        assert component["version"] == pin.version
        assert component["hashes"] == [{"alg": "SHA-256", "content": pin.sha256}]
        assert component["licenses"], component["name"]
    assert document["metadata"]["component"]["hashes"][0]["content"] == windows_env.archive_sha256
    # The check can fail: a broken document is refused.
    document["components"][0]["hashes"][0]["alg"] = "SHA256"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document)) is not None


def test_the_bundle_carries_the_environment_and_checks_it(windows_env):
    spec = build_spec(**CANONICAL, env=True)
    files = render(spec, env=windows_env)
    for name in ENV_FILES:
        assert name in files
    sums = dict(reversed(line.split("  ")) for line in files["SHA256SUMS"].decode("ascii").splitlines())
    for name in ENV_FILES:
        assert sums[name] == hashlib.sha256(files[name]).hexdigest()
    manifest = json.loads(files["bundle.json"])
    assert manifest["inputs"]["env"] is True and manifest["inputs"]["packages"] == ["notebook"]
    assert manifest["inputs"]["python_version"] == "3.13"
    launcher = files["start-py.bat"].decode("utf-8")
    folder = f"env-{hashlib.sha256(windows_env.archive).hexdigest()[:12]}"
    assert (
        f'"%ProgramFiles%\\gen-bundle\\py\\{folder}\\Scripts\\python.exe" -I "%ProgramFiles%\\gen-bundle\\py\\start-py.launcher.py"'
        in launcher
    )
    readme = files["README.md"].decode("utf-8")
    for package in windows_env.packages:
        assert f"| `{package.name}` | `{package.version}` |" in readme
    from support import pwsh

    parse = pwsh.parsers()["tree-sitter-pwsh"].parse
    for script in ("install.ps1", "detect.ps1"):
        values = pwsh.assignments(parse(pwsh.script_text(files[script])))
        assert values["EnvFolder"] == folder, script
        assert values["EnvArchiveSha256"] == hashlib.sha256(windows_env.archive).hexdigest(), script
    values = pwsh.assignments(parse(pwsh.script_text(files["install.ps1"])))
    assert values["EnvArchive"] == "python-env.zip"
    assert values["EnvPythonVersion"] == "3.13" and values["EnvUnpackedBytes"] == str(windows_env.unpacked_bytes)
    # uninstall.ps1 takes back any environment folder of the install folder, this one or an older one.
    assert "EnvFolder" not in pwsh.assignments(parse(pwsh.script_text(files["uninstall.ps1"])))


def test_without_env_the_bundle_has_none_of_it():
    files = render(build_spec(**CANONICAL))
    assert not set(ENV_FILES) & set(files)
    manifest = json.loads(files["bundle.json"])
    assert "env" not in manifest["inputs"] and "packages" not in manifest["inputs"]
    assert "\n    EnvFolder          = ''  #" in files["install.ps1"].decode("utf-8-sig")


def test_the_cli_builds_it_from_the_warm_cache_offline(windows_env, env_cache, tmp_path, monkeypatch):
    """The whole command, offline: a second build with a warm cache needs no network."""
    lock = tmp_path / "pylock.toml"
    lock.write_bytes(windows_env.lock)
    monkeypatch.setenv("GEN_BUNDLE_CACHE_DIR", str(env_cache))
    result = CliRunner().invoke(
        main,
        [
            "--ip",
            "127.0.0.13",
            "--name",
            "py",
            "--env",
            "--offline",
            "--lock",
            str(lock),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    archive = tmp_path / "out" / "python-env.zip"
    assert archive.read_bytes() == windows_env.archive
    reported = re.search(r"Environment: ([0-9.]+) MB archive, built in [0-9.]+ s\.", result.stderr)
    assert reported and float(reported.group(1)) == round(archive.stat().st_size / 1e6, 1), result.stderr


@pytest.mark.parametrize("powershell", ["install.ps1", "uninstall.ps1", "detect.ps1"])
def test_the_env_bundles_scripts_parse_in_both_grammars(windows_env, powershell):
    from support import pwsh

    files = render(build_spec(**CANONICAL, env=True), env=windows_env)
    source = pwsh.script_text(files[powershell])
    for name, parser in pwsh.parsers().items():
        assert pwsh.problems(parser.parse(source)) == [], name
    assert pwsh.ps7_only(pwsh.parsers()["tree-sitter-pwsh"].parse(source)) == []
