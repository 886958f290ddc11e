"""Trust and re-review: gen-bundle sign, check, diff, and --from.

Signing uses a certificate made here (openssl, codeSigning EKU) and the real
osslsigncode, which also verifies each signed script; check and diff run on real
bundles with one thing changed at a time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from generator import __version__
from generator.cli import main
from generator.layout import Layout
from generator.spec import build_spec

from conftest import CANONICAL, need
from support import pwsh
from test_properties import bundle_inputs


def gen(*args: str) -> CliRunner:
    return CliRunner().invoke(main, list(args))


def make(folder: Path, *flags: str) -> Path:
    result = gen("--ip", "127.0.0.13", "--name", "py", *flags, "--out", str(folder))
    assert result.exit_code == 0, result.stderr
    return folder


def self_signed(folder: Path, subject_line: str, *extra: str) -> tuple[Path, Path]:
    """A new key and a self-signed certificate for ``subject_line`` in ``folder``: (key, cert)."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "30", "-utf8", "-multivalue-rdn", "-subj", subject_line, *extra],
        check=True,
        capture_output=True,
    )
    return key, cert


@pytest.fixture(scope="module")
def signer(tmp_path_factory) -> dict[str, Path]:
    need(shutil.which("openssl"), "openssl (Debian: apt-get install openssl)")
    need(shutil.which("osslsigncode"), "osslsigncode (Debian: apt-get install osslsigncode)")
    folder = tmp_path_factory.mktemp("signer")
    key, cert = self_signed(
        folder,
        "/CN=gen-bundle test signer/O=Contoso IT",
        "-addext",
        "extendedKeyUsage=codeSigning",
        "-addext",
        "keyUsage=digitalSignature",
    )
    pfx = folder / "signer.pfx"
    subprocess.run(
        [
            "openssl",
            "pkcs12",
            "-export",
            "-inkey",
            str(key),
            "-in",
            str(cert),
            "-out",
            str(pfx),
            "-passout",
            "pass:correct horse",
        ],
        check=True,
        capture_output=True,
    )
    return {"key": key, "cert": cert, "pfx": pfx}


def osslsigncode_verifies(script: Path, cert: Path) -> bool:
    done = subprocess.run(
        ["osslsigncode", "verify", "-in", str(script), "-CAfile", str(cert)], capture_output=True, text=True
    )
    return done.returncode == 0 and "Signature verification: ok" in done.stdout


def test_signed_scripts_verify_parse_and_check(tmp_path, signer):
    bundle = make(tmp_path / "b")
    result = gen("sign", str(bundle), "--cert", str(signer["cert"]), "--key", str(signer["key"]))
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((bundle / "bundle.json").read_text())
    der = (bundle / "publisher.cer").read_bytes()
    import hashlib

    assert manifest["signature"]["thumbprint"] == hashlib.sha1(der).hexdigest().upper()
    assert "CN=gen-bundle test signer" in manifest["signature"]["subject"]
    assert "publisher.cer" in manifest["files"]
    grammars = pwsh.parsers()
    engine = f"gen-bundle-{__version__}.psm1"
    for name in ("install.ps1", "uninstall.ps1", "detect.ps1", engine):
        script = bundle / name
        assert osslsigncode_verifies(script, signer["cert"]), name
        assert b"# SIG # Begin signature block" in script.read_bytes()
        for grammar, parser in grammars.items():
            assert pwsh.problems(parser.parse(pwsh.script_text(script.read_bytes()))) == [], (name, grammar)
    # The refreshed SHA256SUMS holds for every file, so check passes, naming the signer.
    check = gen("check", str(bundle))
    assert check.exit_code == 0, check.output
    assert manifest["signature"]["thumbprint"] in check.output
    # One byte of a signed script changed: the signature, the sums and the re-render all say so.
    data = bytearray((bundle / "install.ps1").read_bytes())
    at = data.index(b"BundleName") + 1
    data[at] = ord("c")
    (bundle / "install.ps1").write_bytes(bytes(data))
    assert not osslsigncode_verifies(bundle / "install.ps1", signer["cert"])
    check = gen("check", str(bundle), "--json")
    assert check.exit_code == 1
    report = json.loads(check.output)
    problems = {(f["file"], f["problem"]) for f in report["findings"]}
    assert ("install.ps1", "its Authenticode signature does not verify (osslsigncode verify)") in problems
    assert ("install.ps1", "differs from SHA256SUMS") in problems
    assert {f["file"] for f in report["findings"]} == {"install.ps1"}


def engine_check_sha256(data: bytes) -> str:
    """What the scripts' engine check hashes: the engine less a signature block, by its own regex.

    The pattern is read from templates/powershell/engine-check.ps1 and run here with Python's
    re, whose semantics for it (anchors, classes, repetition) are .NET's.
    """
    import hashlib
    import re

    from conftest import REPO

    source = (REPO / "templates" / "powershell" / "engine-check.ps1").read_text(encoding="utf-8")
    pattern = re.search(r"GetString\(\$engineBytes\), '([^']+)'\)", source)
    assert pattern, "engine-check.ps1 no longer matches the signature block with one regex"
    regex = pattern.group(1).replace("\\z", "\\Z")  # .NET's end of input is Python's \Z
    found = re.search(regex, data.decode("latin-1"))
    return hashlib.sha256(data[: found.start() if found else len(data)]).hexdigest()


def test_the_scripts_recognise_the_engine_signed(tmp_path, signer):
    from generator.render import engine

    name, unsigned = engine(__version__)
    bundle = make(tmp_path / "b")
    result = gen("sign", str(bundle), "--cert", str(signer["cert"]), "--key", str(signer["key"]))
    assert result.exit_code == 0, result.stderr
    signed = (bundle / name).read_bytes()
    assert signed != unsigned and osslsigncode_verifies(bundle / name, signer["cert"])
    # install.ps1's check and gen-bundle engine agree on the signed engine's SHA-256...
    printed = gen("engine").output.split()[0]
    assert engine_check_sha256(signed) == printed == engine_check_sha256(unsigned)
    # ...and a line of code after the block, or one changed byte, is not the engine.
    assert engine_check_sha256(signed + b"Remove-Item C:\\ -Recurse\r\n") != printed
    assert engine_check_sha256(signed.replace(b"Initialize-GenBundle", b"Initialize-GenBundlf", 1)) != printed
    # gen-bundle check names a changed engine in a signed bundle.
    (bundle / name).write_bytes(signed.replace(b"Initialize-GenBundle", b"Initialize-GenBundlf", 1))
    report = json.loads(gen("check", str(bundle), "--json").output)
    assert {f["file"] for f in report["findings"]} == {name}


def test_a_pfx_password_never_reaches_a_command_line(tmp_path, signer, monkeypatch):
    bundle = make(tmp_path / "b")
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(argv, *args, **kwargs):
        seen.append([str(part) for part in argv])
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    monkeypatch.setenv("GEN_BUNDLE_SIGN_PASSWORD", "correct horse")
    result = gen("sign", str(bundle), "--pfx", str(signer["pfx"]))
    assert result.exit_code == 0, result.stderr
    assert seen and not any("correct horse" in part for argv in seen for part in argv)
    assert all(osslsigncode_verifies(bundle / name, signer["cert"]) for name in ("install.ps1", "detect.ps1"))
    # A wrong password: an error, and the bundle as it was.
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    monkeypatch.setenv("GEN_BUNDLE_SIGN_PASSWORD", "wrong")
    result = gen("sign", str(bundle), "--pfx", str(signer["pfx"]))
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "wrong" not in result.stderr
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before


def test_sign_refuses_a_bundle_that_changed_after_review(tmp_path, signer):
    bundle = make(tmp_path / "b")
    (bundle / "hosts.txt").write_bytes(b"10.0.0.1 py\r\n")
    result = gen("sign", str(bundle), "--cert", str(signer["cert"]), "--key", str(signer["key"]))
    assert result.exit_code == 1
    assert "hosts.txt: differs from SHA256SUMS" in result.stderr
    assert not (bundle / "publisher.cer").exists()


def rewrite_sums(bundle: Path) -> None:
    import hashlib

    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
        for p in sorted(bundle.iterdir())
        if p.name != "SHA256SUMS"
    ]
    (bundle / "SHA256SUMS").write_text("".join(lines))


def test_check_catches_what_the_hashes_cannot(tmp_path):
    bundle = make(tmp_path / "b")
    assert gen("check", str(bundle)).exit_code == 0
    # A file changed together with its SHA256SUMS line: the sums agree, the re-render does not.
    launcher = bundle / "start-py.launcher.py"
    assert launcher.read_bytes().count(b'"-m", "notebook"') == 1
    launcher.write_bytes(launcher.read_bytes().replace(b'"-m", "notebook"', b'"-m", "evil"'))
    rewrite_sums(bundle)
    result = gen("check", str(bundle))
    assert result.exit_code == 1
    assert "start-py.launcher.py: differs from what gen-bundle renders from bundle.json" in result.output
    assert "differs from SHA256SUMS" not in result.output


def test_check_names_another_generator_version(tmp_path):
    bundle = make(tmp_path / "b")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["version"] = "0.0.9"
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    rewrite_sums(bundle)
    result = gen("check", str(bundle), "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["generator"] == {"bundle": "0.0.9", "this": __version__}
    assert any("made by gen-bundle 0.0.9" in f["problem"] and __version__ in f["problem"] for f in report["findings"])


def test_check_of_a_folder_that_is_no_bundle_exits_2(tmp_path):
    result = gen("check", str(tmp_path))
    assert result.exit_code == 2
    assert "bundle.json" in result.stderr


def test_diff_names_the_port_and_the_task_principal(tmp_path):
    old = make(tmp_path / "old")
    new = make(tmp_path / "new", "--port", "8080", "--scope", "user", "--user", "CONTOSO\\alice")
    result = gen("diff", str(old), str(new))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "input port: 80 -> 8080" in lines
    assert "input scope: machine -> user" in lines
    assert (
        "task runs as: group S-1-5-32-545 (BUILTIN\\Users), run level LeastPrivilege (id Users) -> "
        "user CONTOSO\\alice, run level LeastPrivilege (id User)"
    ) in lines
    assert "task starts at: LogonTrigger -> LogonTrigger CONTOSO\\alice" in lines
    # The task XML is shown decoded from UTF-16, as text.
    assert "--- a/py.task.xml (new values put in)" in lines
    assert any(line.startswith("+") and "<UserId>" in line for line in lines)


def edit_task(path: Path, *changes: tuple[str, str]) -> None:
    """A task XML (UTF-16LE with BOM) with each text replaced, as someone editing it would."""
    text = path.read_bytes()[2:].decode("utf-16-le")
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))


def test_diff_says_in_words_what_changed_in_the_brokers_task(tmp_path):
    """The broker's boot task (NAME.broker.task.xml) in words, apart from the logon task (NAME.task.xml):
    its principal, its own SID, its privileges, its trigger, its command and arguments."""
    old = make(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    edit_task(
        new / "py.broker.task.xml",
        ("<UserId>S-1-5-19</UserId>", "<UserId>S-1-5-18</UserId>"),
        ("<ProcessTokenSidType>Unrestricted</ProcessTokenSidType>", "<ProcessTokenSidType>None</ProcessTokenSidType>"),
        (
            "<Privilege>SeChangeNotifyPrivilege</Privilege>",
            "<Privilege>SeChangeNotifyPrivilege</Privilege><Privilege>SeImpersonatePrivilege</Privilege>",
        ),
        ("<BootTrigger>", "<LogonTrigger>"),
        ("</BootTrigger>", "</LogonTrigger>"),
        (" serve --ip ", " serve --debug --ip "),
    )
    result = gen("diff", str(old), str(new))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert (
        "broker task runs as: user S-1-5-19 (LOCAL SERVICE), run level LeastPrivilege (id LocalService) -> "
        "user S-1-5-18 (SYSTEM), run level LeastPrivilege (id LocalService)"
    ) in lines
    assert "broker task own SID (ProcessTokenSidType): Unrestricted -> None" in lines
    assert (
        "broker task privileges (RequiredPrivileges): SeChangeNotifyPrivilege -> "
        "SeChangeNotifyPrivilege, SeImpersonatePrivilege"
    ) in lines
    assert "broker task starts at: BootTrigger -> LogonTrigger" in lines
    (command,) = [line for line in lines if line.startswith("broker task command: ")]
    assert "serve --ip 127.0.0.13" in command and "-> %ProgramFiles%\\Python313\\python.exe -I" in command
    assert command.endswith('broker.log"') and "serve --debug --ip 127.0.0.13" in command.split(" -> ")[1]
    # The path carries the SID of its own that Unrestricted gives, which the ACLs grant: gone with None.
    sid = Layout(build_spec(ip="127.0.0.13", name="py")).broker_task_sid
    assert f"broker task path: \\gen-bundle\\py-broker (its own SID: {sid}) -> \\gen-bundle\\py-broker" in lines
    # The logon task did not change: no line names it, and the broker's task is not read as it.
    assert not [line for line in lines if line.startswith("task ")], result.output
    assert "broker program code unchanged: py.broker.py (code SHA-256 " in result.output


def test_diff_names_both_tasks_and_the_broker_program_between_two_bundles(tmp_path):
    old = make(tmp_path / "old")
    new = make(tmp_path / "new", "--ip", "127.0.0.14", "--name", "lab", "--port", "8080")
    lines = gen("diff", str(old), str(new)).output.splitlines()
    assert "task path: \\gen-bundle\\py -> \\gen-bundle\\lab" in lines
    (path,) = [line for line in lines if line.startswith("broker task path: ")]
    assert path.startswith("broker task path: \\gen-bundle\\py-broker (its own SID: S-1-5-87-")
    assert "-> \\gen-bundle\\lab-broker (its own SID: S-1-5-87-" in path
    (command,) = [line for line in lines if line.startswith("broker task command: ")]
    assert "--ip 127.0.0.13 --port 80 --name py" in command and "--ip 127.0.0.14 --port 8080 --name lab" in command
    assert not [line for line in lines if line.startswith(("broker task runs as", "broker task privileges"))]
    # The broker's code is the same in every bundle of a version: said in one line, under its new name.
    (program,) = [line for line in lines if line.startswith("broker program ")]
    assert program.startswith("broker program code unchanged: lab.broker.py (code SHA-256 ")
    assert "file renamed: py.broker.py -> lab.broker.py (with --name)" in lines
    assert "file renamed: py.broker.task.xml -> lab.broker.task.xml (with --name)" in lines
    # Its diff is its header's: the new port put into its code (a literal 80 there) shows no change.
    assert any(
        line.startswith("file changed: py.broker.py -> lab.broker.py (its header; the code below it unchanged)")
        for line in lines
    )
    assert not [line for line in lines if line[:1] in "+-" and ("8080" in line or "80)" in line) and "unpack" in line]


def test_diff_names_a_change_of_the_brokers_code_and_a_broker_added(tmp_path):
    old = make(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    broker = new / "py.broker.py"
    data = broker.read_bytes()
    assert data.startswith(b"# gen-bundle ")
    broker.write_bytes(data.replace(b"MAX_CONNECTIONS = 220", b"MAX_CONNECTIONS = 20000", 1))
    lines = gen("diff", str(old), str(new)).output.splitlines()
    (program,) = [line for line in lines if line.startswith("broker program ")]
    assert program.startswith("broker program code changed: py.broker.py (code SHA-256 ")
    assert program.endswith("; its diff is below")
    assert "+MAX_CONNECTIONS = 20000" in lines
    # Its header names the bundle: a change there alone is no change of its code, unless it declares
    # how Python reads the file (PEP 263), which changes the code below it.
    broker.write_bytes(data.replace(b"# gen-bundle ", b"# gen-bundle, edited: ", 1))
    lines = gen("diff", str(old), str(new)).output.splitlines()
    assert [line for line in lines if line.startswith("broker program ")][0].startswith("broker program code unchanged")
    broker.write_bytes(b"# -*- coding: utf-7 -*-\r\n" + data)
    lines = gen("diff", str(old), str(new)).output.splitlines()
    assert [line for line in lines if line.startswith("broker program ")][0].startswith("broker program code changed")
    # A bundle of an earlier version, without the broker: the broker and its task are named as new,
    # the task's settings in words.
    earlier = tmp_path / "earlier"
    shutil.copytree(old, earlier)
    (earlier / "py.broker.py").unlink()
    (earlier / "py.broker.task.xml").unlink()
    lines = gen("diff", str(earlier), str(old)).output.splitlines()
    assert "file added: py.broker.py" in lines and "file added: py.broker.task.xml" in lines
    assert any(line.startswith("broker program added: py.broker.py (code SHA-256 ") for line in lines)
    assert (
        "broker task runs as: (none) -> user S-1-5-19 (LOCAL SERVICE), run level LeastPrivilege (id LocalService)"
        in lines
    )
    assert "broker task starts at: (none) -> BootTrigger" in lines
    assert "broker task privileges (RequiredPrivileges): (none) -> SeChangeNotifyPrivilege" in lines
    assert not [line for line in lines if line.startswith("task ")]
    # And the other way: removed.
    lines = gen("diff", str(old), str(earlier)).output.splitlines()
    assert any(line.startswith("broker program removed: py.broker.py") for line in lines)
    assert "broker task starts at: BootTrigger -> (none)" in lines


def test_diff_of_identical_bundles_is_silent(tmp_path):
    old, new = make(tmp_path / "old"), make(tmp_path / "new")
    result = gen("diff", str(old), str(new))
    assert result.exit_code == 0 and result.output == ""


def test_diff_shows_a_line_ending_only_where_it_changed(tmp_path):
    old, new = make(tmp_path / "old"), make(tmp_path / "new")
    launcher = new / "start-py.bat"
    data = launcher.read_bytes()
    at = data.index(b"\r\n", 200)
    launcher.write_bytes(data[:at] + b"\n" + data[at + 2 :])
    result = gen("diff", str(old), str(new))
    changed = [line for line in result.output.splitlines() if line[:1] in "-+" and not line.startswith(("---", "+++"))]
    assert len(changed) == 2
    assert changed[0].endswith(" [CRLF]") and changed[1].endswith(" [LF]")
    assert "\r" not in result.output


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=bundle_inputs())
def test_from_bundle_json_gives_the_same_bytes(tmp_path_factory, inputs):
    from generator.api import generate

    folder = tmp_path_factory.mktemp("round")
    first = generate(**inputs, out=folder / "first")
    result = gen("--from", str(first / "bundle.json"), "--out", str(folder / "again"))
    assert result.exit_code == 0, result.stderr
    assert {p.name: p.read_bytes() for p in first.iterdir()} == {
        p.name: p.read_bytes() for p in (folder / "again").iterdir()
    }


def test_from_refuses_other_inputs(tmp_path):
    bundle = make(tmp_path / "b")
    result = gen("--from", str(bundle / "bundle.json"), "--port", "81", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "--port cannot be given with it" in result.stderr
    assert not (tmp_path / "x").exists()


def test_subcommands_have_their_own_help():
    for command, argument in (("check", "DIR"), ("diff", "OLD NEW"), ("sign", "DIR")):
        result = CliRunner().invoke(main, [command, "--help"], prog_name="gen-bundle")
        assert result.exit_code == 0
        assert result.output.startswith(f"Usage: gen-bundle {command} [OPTIONS] {argument}\n"), result.output


def test_options_of_a_bundle_go_without_a_command(tmp_path):
    result = gen("--port", "81", "check", str(tmp_path))
    assert result.exit_code == 2 and "go without a command" in result.stderr


def test_env_bundles_regenerate_from_their_own_lock(tmp_path, windows_env, env_cache, monkeypatch):
    """--from an --env bundle: its pylock.toml rebuilds the same archive, offline."""
    lock = tmp_path / "pylock.toml"
    lock.write_bytes(windows_env.lock)
    monkeypatch.setenv("GEN_BUNDLE_CACHE_DIR", str(env_cache))
    first = make(tmp_path / "first", "--env", "--lock", str(lock), "--offline")
    files = {p.name: p.read_bytes() for p in first.iterdir()}
    result = gen("--from", str(first / "bundle.json"), "--offline", "--out", str(tmp_path / "again"))
    assert result.exit_code == 0, result.stderr
    again = {p.name: p.read_bytes() for p in (tmp_path / "again").iterdir()}
    assert again == files
    assert gen("check", str(first)).exit_code == 0  # from the cache: check fetches nothing unless --download


def test_the_help_examples_work_as_documented(tmp_path, signer, monkeypatch):
    """Every example of `gen-bundle --help` (the README shows the same text), run as written;
    those that read a bundle find one made by the canonical command in their folder."""
    import shlex

    from generator.cli import EPILOG

    examples = [shlex.split(line.strip()) for line in EPILOG.splitlines() if line.strip().startswith("gen-bundle ")]
    commands = [args for example in examples for args in _split_pairs(example)]
    assert len(commands) >= 10
    for number, args in enumerate(commands):
        if "--env" in args:
            continue  # resolves against the index: test_environment.py builds these for real
        folder = tmp_path / f"example{number}"
        folder.mkdir()
        monkeypatch.chdir(folder)
        reads_a_bundle = args[1] in ("check", "diff", "sign") or "--from" in args
        if reads_a_bundle:
            assert gen("--ip", "127.0.0.13", "--name", "py").exit_code == 0
        if args[1] == "diff":
            assert gen("--from", "out/bundle.json", "--out", "out-new").exit_code == 0
        if args[1] == "sign":
            shutil.copy(signer["cert"], "signer.pem")
            shutil.copy(signer["key"], "signer.key")
        result = gen(*args[1:])
        assert result.exit_code == 0, (args, result.output, result.stderr)


def _split_pairs(example: list[str]) -> list[list[str]]:
    """'gen-bundle check out gen-bundle diff out out-new' (two examples on one line) -> two commands."""
    commands, current = [], []
    for word in example:
        if word == "gen-bundle" and current:
            commands.append(current)
            current = []
        if not word.startswith("("):
            current.append(word)
        else:
            break
    return [*commands, current]


# ---- what a review of check, diff and sign found, each kept from coming back ----


def signed_bundle(tmp_path: Path, signer: dict[str, Path], name: str = "s") -> Path:
    bundle = make(tmp_path / name)
    assert gen("sign", str(bundle), "--cert", str(signer["cert"]), "--key", str(signer["key"])).exit_code == 0
    return bundle


def test_code_hidden_in_a_signature_block_is_caught(tmp_path, signer):
    bundle = signed_bundle(tmp_path, signer)
    script = bundle / "detect.ps1"
    data = script.read_bytes()
    begin = data.rindex(b"# SIG # Begin signature block\r\n") + len(b"# SIG # Begin signature block\r\n")
    script.write_bytes(data[: begin + 40] + b"\r\nStart-Process calc.exe\r\n" + data[begin + 40 :])
    rewrite_sums(bundle)
    result = gen("check", str(bundle))
    assert result.exit_code == 1
    assert "detect.ps1: differs from what gen-bundle renders from bundle.json" in result.output


def test_sign_signs_only_what_gen_bundle_renders(tmp_path, signer):
    bundle = make(tmp_path / "b")
    (bundle / "install.ps1").write_bytes((bundle / "install.ps1").read_bytes() + b"\r\nStart-Process calc.exe\r\n")
    rewrite_sums(bundle)  # the folder's own SHA256SUMS agrees: that is not enough
    result = gen("sign", str(bundle), "--cert", str(signer["cert"]), "--key", str(signer["key"]))
    assert result.exit_code == 1
    assert "is not exactly what gen-bundle renders from its bundle.json (SHA256SUMS, install.ps1:" in result.stderr
    assert not (bundle / "publisher.cer").exists()


def test_a_forged_signer_record_and_a_second_key_are_caught(tmp_path, signer):
    bundle = signed_bundle(tmp_path, signer)
    text = (bundle / "bundle.json").read_text()
    forged = text.replace('"subject": "', '"subject": "CN=Microsoft Windows,', 1)
    (bundle / "bundle.json").write_text(forged)
    rewrite_sums(bundle)
    assert gen("check", str(bundle)).exit_code == 1
    twice = text.replace(
        '"generator": "gen-bundle",', '"generator": "gen-bundle",\n  "inputs": {"ip": "127.0.0.99"},', 1
    )
    (bundle / "bundle.json").write_text(twice)
    rewrite_sums(bundle)
    result = gen("check", str(bundle))
    assert result.exit_code == 2 and "appears twice" in result.stderr


def test_check_pins_the_signer_and_reads_sha256sums_exactly(tmp_path, signer):
    bundle = signed_bundle(tmp_path, signer)
    thumbprint = json.loads((bundle / "bundle.json").read_text())["signature"]["thumbprint"]
    assert gen("check", str(bundle), "--signer", thumbprint.lower()).exit_code == 0
    other = gen("check", str(bundle), "--signer", "0" * 40)
    assert other.exit_code == 1 and f"signed by {thumbprint}, not by {'0' * 40}" in other.output
    with open(bundle / "SHA256SUMS", "a") as sums:
        sums.write("junk\n")  # install.ps1 stops on such a line: check must not pass it
    result = gen("check", str(bundle))
    assert result.exit_code == 1 and "SHA256SUMS: differs" in result.output


def test_odd_manifests_and_locks_are_errors_not_tracebacks(tmp_path, signer):
    bundle = signed_bundle(tmp_path, signer)
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["files"] = 5
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    for command in (["check", str(bundle)], ["diff", str(bundle), str(bundle)]):
        result = gen(*command)
        assert result.exit_code == 2 and "'files' is not a list" in result.stderr, command
        assert result.exception is None or isinstance(result.exception, SystemExit)
    old, new = make(tmp_path / "old"), make(tmp_path / "new")
    (old / "pylock.toml").write_text('lock-version = "1.0"\npackages = 5\n')
    (new / "pylock.toml").write_text('lock-version = "1.0"\n')
    result = gen("diff", str(old), str(new))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)


def test_diff_names_every_difference(tmp_path):
    old = make(tmp_path / "old")
    cases = {
        "sums": lambda b: (b / "SHA256SUMS").write_bytes((b / "SHA256SUMS").read_bytes() + b"\n"),
        "entry": lambda b: (b / "sub").mkdir(),
        "bom": lambda b: (b / "install.ps1").write_bytes((b / "install.ps1").read_bytes()[3:]),
        "action": lambda b: (b / "py.task.xml").write_bytes(
            (b / "py.task.xml")
            .read_bytes()
            .replace(
                "</Exec>".encode("utf-16-le"), "</Exec><Exec><Command>C:\\evil.exe</Command></Exec>".encode("utf-16-le")
            )
        ),
    }
    expected = {
        "sums": "--- a/SHA256SUMS",
        "entry": "entry added: sub (not a regular file: a bundle holds files only)",
        "bom": "file changed: install.ps1 (the same text in another encoding or byte order mark: "
        "UTF-8 with BOM -> no BOM)",
        "action": "C:\\evil.exe",
    }
    for case, change in cases.items():
        new = tmp_path / case
        shutil.copytree(old, new)
        change(new)
        result = gen("diff", str(old), str(new))
        assert result.exit_code == 1, case
        summary = [line for line in result.output.splitlines() if case != "action" or line.startswith("task command")]
        assert any(expected[case] in line for line in summary), (case, result.output[:500])


def test_check_fetches_nothing_a_bundle_names(tmp_path, windows_env, env_cache, monkeypatch):
    """An --env bundle whose lock points at an address of its choosing: check does not go there."""
    import http.server
    import threading

    requests: list[str] = []

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lock = tmp_path / "pylock.toml"
        lock.write_bytes(windows_env.lock)
        monkeypatch.setenv("GEN_BUNDLE_CACHE_DIR", str(env_cache))
        bundle = make(tmp_path / "e", "--env", "--lock", str(lock), "--offline")
        text = (bundle / "pylock.toml").read_text()
        first = text.index('url = "') + len('url = "')
        url = text[first : text.index('"', first)]
        filename = url.rsplit("/", 1)[1]
        (bundle / "pylock.toml").write_text(text.replace(url, f"http://127.0.0.1:{server.server_port}/{filename}"))
        rewrite_sums(bundle)
        monkeypatch.setenv("GEN_BUNDLE_CACHE_DIR", str(tmp_path / "empty-cache"))
        result = gen("check", str(bundle))
        assert result.exit_code == 1 and "check --download" in result.output
        assert requests == []
    finally:
        server.shutdown()


def test_the_password_is_in_no_child_environment(tmp_path, signer, monkeypatch):
    bundle = make(tmp_path / "b")
    environments: list[dict] = []
    real_run = subprocess.run

    def spy(argv, *args, **kwargs):
        environments.append(kwargs.get("env") or dict(os.environ))
        return real_run(argv, *args, **kwargs)

    import os

    monkeypatch.setattr(subprocess, "run", spy)
    monkeypatch.setenv("GEN_BUNDLE_SIGN_PASSWORD", "correct horse")
    assert gen("sign", str(bundle), "--pfx", str(signer["pfx"])).exit_code == 0
    assert environments and all("correct horse" not in environment.values() for environment in environments)


def test_diff_names_package_version_changes_from_the_locks(tmp_path):
    old, new = make(tmp_path / "old"), make(tmp_path / "new")
    lock = (
        'lock-version = "1.0"\n[[packages]]\nname = "notebook"\nversion = "{}"\n'
        '[[packages]]\nname = "{}"\nversion = "1"\n'
    )
    (old / "pylock.toml").write_text(lock.format("7.6.4", "six"))
    (new / "pylock.toml").write_text(lock.format("7.6.5", "pandas"))
    lines = gen("diff", str(old), str(new)).output.splitlines()
    assert "package notebook: 7.6.4 -> 7.6.5" in lines
    assert "package pandas: (none) -> 1" in lines and "package six: 1 -> (removed)" in lines


@pytest.mark.parametrize("command", [["--ip", "127.0.0.13", "--name", "py", "--out", "again"], ["check", "b"]])
def test_the_environments_build_code_is_loaded_only_with_env(tmp_path, command):
    """Start-up is measured: the canonical run and check of a bundle without an environment
    import nothing of generator.environment (urllib, zipfile, tomllib, uv)."""
    import sys

    make(tmp_path / "b")
    probe = (
        "import sys\nfrom generator.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "print(sorted(m for m in sys.modules if m.startswith('generator.environment') or m == 'urllib.request'))"
    )
    done = subprocess.run([sys.executable, "-c", probe, *command], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ---- the engine: one file a reviewer approves once per version --------------------------


def test_the_engine_sha256_is_the_same_wherever_a_reviewer_reads_it(tmp_path):
    import hashlib

    bundle = make(tmp_path / "b")
    name = f"gen-bundle-{__version__}.psm1"
    sha = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    printed = gen("engine")
    assert printed.exit_code == 0 and printed.output == f"{sha}  {name}\n"
    assert json.loads((bundle / "bundle.json").read_text())["engine"] == {"file": name, "sha256": sha}
    readme = (bundle / "README.md").read_text(encoding="utf-8")
    assert sha in readme.split("\n## ", 2)[1], "the review guide, the README's first section, names it"
    for script in ("install.ps1", "uninstall.ps1", "detect.ps1"):
        tree = pwsh.parsers()["tree-sitter-pwsh"].parse(pwsh.script_text((bundle / script).read_bytes()))
        values = pwsh.assignments(tree)
        assert values["EngineSha256"] == sha and values["EngineFile"] == name, script
    # --save writes the same bytes, again without harm, and leaves another file of that name alone.
    saved = tmp_path / "review"
    for _ in range(2):
        assert gen("engine", "--save", str(saved)).exit_code == 0
        assert (saved / name).read_bytes() == (bundle / name).read_bytes()
    assert sorted(p.name for p in saved.iterdir()) == [name]
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert (saved / name).stat().st_mode & 0o777 == 0o666 & ~umask  # readable as any written file, not 0600
    (saved / name).write_bytes(b"someone else's\r\n")
    refused = gen("engine", "--save", str(saved))
    assert refused.exit_code == 1 and str(saved / name) in refused.stderr
    assert (saved / name).read_bytes() == b"someone else's\r\n"


def test_diff_of_two_bundles_of_one_version_says_engine_unchanged(tmp_path):
    import hashlib

    old, new = make(tmp_path / "old"), make(tmp_path / "new", "--port", "8080")
    name = f"gen-bundle-{__version__}.psm1"
    result = gen("diff", str(old), str(new))
    assert result.exit_code == 1
    sha = hashlib.sha256((new / name).read_bytes()).hexdigest()
    assert f"engine unchanged: {name} (SHA-256 {sha})" in result.output.splitlines()
    assert "==== engine" not in result.output
    assert not [line for line in result.output.splitlines() if line.startswith("file ") and name in line]


def test_diff_between_versions_shows_the_engine_as_one_section(tmp_path):
    import hashlib

    old, new = make(tmp_path / "old"), make(tmp_path / "new")
    name = f"gen-bundle-{__version__}.psm1"
    # The same bundle, as a fictitious earlier version whose engine had one line changed.
    engine = (old / name).read_bytes().replace(b"$ExitFailure       = 1603", b"$ExitFailure       = 1602", 1)
    (old / name).unlink()
    (old / "gen-bundle-0.1.9.psm1").write_bytes(engine)
    manifest = json.loads((old / "bundle.json").read_text())
    manifest["version"] = "0.1.9"
    manifest["engine"] = {"file": "gen-bundle-0.1.9.psm1", "sha256": hashlib.sha256(engine).hexdigest()}
    manifest["files"] = sorted(p.name for p in old.iterdir() if p.name != "SHA256SUMS")
    (old / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    rewrite_sums(old)
    result = gen("diff", str(old), str(new))
    lines = result.output.splitlines()
    assert result.exit_code == 1 and "generator: gen-bundle 0.1.9 -> " + __version__ in lines
    assert any(
        line.startswith(f"engine changed: gen-bundle-0.1.9.psm1 (SHA-256 {manifest['engine']['sha256']}) -> {name}")
        for line in lines
    )
    section = result.output[result.output.index("==== engine: gen-bundle-0.1.9.psm1 -> " + name + " ====\n") :]
    assert "\n-$ExitFailure       = 1602" in section and "\n+$ExitFailure       = 1603" in section
    assert "\n====" not in section[1:] and "file added" not in result.output and "file removed" not in result.output


def test_a_bundle_json_of_a_later_schema_is_refused_by_name(tmp_path):
    bundle = make(tmp_path / "b")
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["schema"] == 2
    manifest["schema"] = 3
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    rewrite_sums(bundle)
    for command in (["check", str(bundle)], ["diff", str(bundle), str(bundle)]):
        result = gen(*command)
        assert result.exit_code == 2 and "'schema' 3 is not a bundle.json form" in result.stderr, command


SECOND_BUNDLES = [
    ("--ip", "127.0.0.14", "--name", "lab", "--port", "8080"),
    ("--port", "8080", "--scope", "user", "--user", "CONTOSO\\ada"),
    ("--window", "minimized"),
    ("--auth", "none", "--notebook-dir", "D:\\Data"),
]


@pytest.mark.parametrize("flags", SECOND_BUNDLES, ids=lambda flags: " ".join(flags[::2]))
def test_a_second_bundle_of_one_version_is_read_in_fewer_than_200_lines(tmp_path, flags):
    """What a reviewer who approved the canonical bundle reads for another: gen-bundle diff, up to
    the README's section (documentation, which follows from the code above it)."""
    first, second = make(tmp_path / "first"), make(tmp_path / "second", *flags)
    lines = gen("diff", str(first), str(second)).output.splitlines()
    assert any(line.startswith("engine unchanged: ") for line in lines)
    code = lines[: next(i for i, line in enumerate(lines) if "README.md" in line)]
    print(len(code), len(lines))
    assert len(code) < 200, "\n".join(code)


def test_putting_in_the_new_values_hides_no_other_change(tmp_path):
    from generator.diff import put_in

    old, new = make(tmp_path / "old"), make(tmp_path / "new", "--ip", "127.0.0.14", "--name", "lab")
    launcher = new / "start-lab.launcher.py"
    assert launcher.read_bytes().count(b'"-m", "notebook"') == 1
    launcher.write_bytes(launcher.read_bytes().replace(b'"-m", "notebook"', b'"-m", "notebooq"'))
    lines = gen("diff", str(old), str(new)).output.splitlines()
    assert "file changed: start-lab.launcher.py" not in " ".join(lines)
    assert any(line.startswith("+") and '"-m", "notebooq"' in line for line in lines)
    assert any(line.startswith("-") and '"-m", "notebook"' in line for line in lines)
    # --verbatim: every line that quotes a changed value, as it is.
    verbatim = gen("diff", "--verbatim", str(old), str(new)).output.splitlines()
    assert "-rem install.ps1 puts this file at %ProgramFiles%\\gen-bundle\\py\\start-py.bat" in verbatim
    assert len(verbatim) > 3 * len(lines)
    # A value is put in only where it stands alone, all at once, and never after a dot.
    changes = [("py", "lab"), ("lab", "py")]
    assert put_in("py lab python start-py.config.py gen-bundle\\py\\x", changes) == (
        "lab py python start-lab.config.py gen-bundle\\lab\\x"
    )


@pytest.mark.parametrize(
    "subject_line",
    [
        "/CN=gen-bundle test signer/O=Contoso IT",
        '/CN=Doe, John+OU=IT/O=Contoso "EU" <Ltd>;/C=DE',
        "/CN=Zoë O'Brien/OU= leading and trailing /DC=corp/DC=example",
        "/CN=#hash/emailAddress=it@example.com/serialNumber=42",
    ],
)
def test_the_subject_is_read_from_the_certificate_as_openssl_reads_it(tmp_path, subject_line):
    from generator.x509 import subject

    need(shutil.which("openssl"), "openssl (Debian: apt-get install openssl)")
    _, cert = self_signed(tmp_path, subject_line)
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-outform", "DER"], check=True, capture_output=True
    ).stdout
    told = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert subject(der) == told.strip().removeprefix("subject=").strip()


def test_check_of_a_signed_bundle_needs_no_openssl(tmp_path, signer, monkeypatch):
    bundle = signed_bundle(tmp_path, signer)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "osslsigncode").symlink_to(shutil.which("osslsigncode"))
    monkeypatch.setenv("PATH", str(tools))
    result = gen("check", str(bundle))
    assert result.exit_code == 0, result.output
    # The control: without osslsigncode the signatures cannot be verified, and check says so.
    (tools / "osslsigncode").unlink()
    result = gen("check", str(bundle))
    assert result.exit_code != 0 and "osslsigncode" in result.output + result.stderr


def test_a_pfx_without_a_password_is_read_with_an_empty_one(tmp_path, signer):
    from generator.sign import sign_bundle

    pfx = tmp_path / "open.pfx"
    subprocess.run(
        [
            "openssl",
            "pkcs12",
            "-export",
            "-inkey",
            str(signer["key"]),
            "-in",
            str(signer["cert"]),
            "-out",
            str(pfx),
            "-passout",
            "pass:",
        ],
        check=True,
        capture_output=True,
    )
    bundle = make(tmp_path / "b")
    entry = sign_bundle(bundle, pfx=pfx, password=None)
    assert entry["subject"] == "O=Contoso IT,CN=gen-bundle test signer"
    assert osslsigncode_verifies(bundle / "install.ps1", signer["cert"])


def test_diff_reads_every_file_of_a_bundle_as_text_but_the_archive():
    """diff's list of text suffixes covers every file a bundle holds (with and without --env),
    but the environment's archive: a new kind of file is not silently diffed as "binary"."""
    from generator.bundle_format import ENV_ARCHIVE, SHA256SUMS
    from generator.diff import TEXT_SUFFIXES
    from generator.render import bundle_files
    from generator.spec import build_spec

    for spec in (build_spec(**CANONICAL), build_spec(**CANONICAL, env=True, python_version="3.13")):
        binary = [name for name in bundle_files(spec) if not name.endswith(TEXT_SUFFIXES) and name != SHA256SUMS]
        assert binary == ([ENV_ARCHIVE] if spec.env else [])
