"""install.ps1 and uninstall.ps1: parsed by two PowerShell grammars."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.spec import build_spec
from support import pwsh

SCRIPTS = ["install.ps1", "uninstall.ps1"]


@pytest.fixture(scope="module")
def grammars():
    try:
        return pwsh.parsers()
    except ImportError as exc:  # pragma: no cover - the CI installs both
        from conftest import need

        need(False, f"tree-sitter grammars for PowerShell ({exc})")


@pytest.mark.parametrize("script", SCRIPTS)
def test_parses_cleanly_in_both_grammars(canonical_files, grammars, script):
    source = pwsh.script_text(canonical_files[script])
    for name, parser in grammars.items():
        tree = parser.parse(source)
        assert pwsh.problems(tree) == [], f"{name}: {script}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_powershell_7_only_construct(canonical_files, grammars, script):
    tree = grammars["tree-sitter-pwsh"].parse(pwsh.script_text(canonical_files[script]))
    assert pwsh.ps7_only(tree) == []


def test_the_checks_can_fail(grammars):
    """The same checks, on lines that 5.1 cannot run or nobody can parse."""
    ps7 = grammars["tree-sitter-pwsh"].parse(b"$a = $b ?? 1\r\n$c = $d ? 1 : 2\r\nls && ls\r\n")
    assert len(pwsh.ps7_only(ps7)) == 3
    for parser in grammars.values():
        assert pwsh.problems(parser.parse(b"$x = 'unterminated\r\nif ($x {\r\n"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_bundle_values_are_single_quoted_literals(canonical_files, grammars, script):
    values = pwsh.assignments(grammars["tree-sitter-pwsh"].parse(pwsh.script_text(canonical_files[script])))
    assert values["BundleName"] == "py"
    assert values["BundleIp"] == "127.0.0.13"
    assert values["TaskFolder"] == "\\gen-bundle\\"
    assert values["InstallDir"] == ("ProgramFiles", "gen-bundle\\py")
    assert values["HostsBegin"] == "# BEGIN gen-bundle py"
    assert values["HostsEnd"] == "# END gen-bundle py"


def test_install_knows_the_python_and_the_files_it_verifies(canonical_files, grammars):
    values = pwsh.assignments(grammars["tree-sitter-pwsh"].parse(pwsh.script_text(canonical_files["install.ps1"])))
    # The Start-menu entry's arguments: the same line the launcher test runs under wine.
    assert values["ShortcutArguments"] == build_spec(ip="127.0.0.13", name="py").shortcut_arguments == "/d /c .\\start-py.bat open"
    assert values["PythonExe"] == ("ProgramFiles", "Python313\\python.exe")
    listed = values["BundleFiles"]
    for name in canonical_files:
        if name != "SHA256SUMS":
            assert f"'{name}'" in listed


@pytest.mark.parametrize("script", SCRIPTS)
def test_comment_help_declares_whatif_support(canonical_files, grammars, script):
    tree = grammars["tree-sitter-pwsh"].parse(pwsh.script_text(canonical_files[script]))
    attributes = [n.text.decode() for n in pwsh.walk(tree.root_node) if n.type == "attribute"]
    assert any("CmdletBinding" in a and "SupportsShouldProcess" in a for a in attributes)
    comments = [n.text.decode() for n in pwsh.walk(tree.root_node) if n.type == "comment"]
    help_block = next(c for c in comments if c.startswith("<#"))
    for keyword in (".SYNOPSIS", ".DESCRIPTION", ".EXAMPLE", ".NOTES"):
        assert keyword in help_block


ALL_SCRIPTS = ["install.ps1", "uninstall.ps1", "detect.ps1"]
SCOPES = [{}, {"scope": "user", "user": "CONTOSO\\alice"}, {"python": "%LOCALAPPDATA%\\Py\\python.exe"}]


from conftest import render_bundle as bundle  # noqa: E402


@pytest.mark.parametrize("inputs", SCOPES, ids=["machine", "user", "per-user-python"])
@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_every_variant_parses_in_both_grammars(grammars, inputs, script):
    source = pwsh.script_text(bundle(**inputs)[script])
    for name, parser in grammars.items():
        tree = parser.parse(source)
        assert pwsh.problems(tree) == [], f"{name}: {script}"
    assert pwsh.ps7_only(grammars["tree-sitter-pwsh"].parse(source)) == []


@pytest.mark.parametrize("inputs", SCOPES, ids=["machine", "user", "per-user-python"])
@pytest.mark.parametrize("script", ["install.ps1", "uninstall.ps1"])
def test_every_state_change_sits_under_should_process(grammars, inputs, script):
    tree = grammars["tree-sitter-pwsh"].parse(pwsh.script_text(bundle(**inputs)[script]))
    assert pwsh.unguarded_changes(tree) == []


def test_detect_changes_nothing_at_all(grammars):
    tree = grammars["tree-sitter-pwsh"].parse(pwsh.script_text(bundle()["detect.ps1"]))
    direct = [n for n in pwsh.walk(tree.root_node) if pwsh._changes_state(n)]
    # Only the helpers shared with install/uninstall contain changes; detect never calls them.
    called = {pwsh._command_name(n) for n in pwsh.walk(tree.root_node) if n.type == "command"}
    helpers = {"write-hostsfile", "clear-namecache", "stop-bundleprocess", "protect-statedirectory", "new-adminonlyfolder"}
    assert {pwsh._enclosing_function(n) for n in direct} <= helpers
    assert not called & helpers


def test_the_should_process_check_can_fail(grammars):
    parser = grammars["tree-sitter-pwsh"]
    bad = parser.parse(
        b"function Save-It {\r\n    Copy-Item -LiteralPath a -Destination b\r\n}\r\n"
        b"if ($PSCmdlet.ShouldProcess('x', 'y')) { Remove-Item -LiteralPath c }\r\n"
        b"Save-It\r\n"
        b"[IO.File]::WriteAllBytes($p, $b)\r\n"
        b"if ($x) { Stop-Process -Id 1 } elseif ($PSCmdlet.ShouldProcess('p', 'q')) { Stop-Process -Id 2 }\r\n"
    )
    found = pwsh.unguarded_changes(bad)
    assert [line.split(":")[0] for line in found] == ["line 5", "line 6", "line 7"], found


SENTINELS = {
    "name": "zqxwvname",
    "ip": "127.99.88.77",
    "port": 54321,
    "python": "C:\\SentinelPy Dir\\python.exe",
    "notebook_dir": "C:\\SentinelNotebooks",
}


@pytest.mark.parametrize("script", ALL_SCRIPTS)
@pytest.mark.parametrize("scope", ["machine", "user"])
def test_bundle_values_appear_only_as_single_quoted_literals(grammars, script, scope):
    inputs = dict(SENTINELS)
    if scope == "user":
        inputs.update(scope="user", user="SENTINELDOM\\sentineluser")
    files = bundle(**inputs)
    tree = grammars["tree-sitter-pwsh"].parse(pwsh.script_text(files[script]))
    sentinels = ["zqxwvname", "127.99.88.77", "54321", "SentinelPy", "SentinelNotebooks", "SENTINELDOM", "sentineluser"]
    assert pwsh.literal_violations(tree, sentinels) == []
    text = files[script].decode("utf-8-sig")
    assert "'127.99.88.77'" in text  # the check saw the values it looks for


def test_the_literal_check_can_fail(grammars):
    tree = grammars["tree-sitter-pwsh"].parse(b"$a = 'zqxwvname'\r\n$b = \"zqxwvname\"\r\nWrite-Output zqxwvname\r\n")
    assert len(pwsh.literal_violations(tree, ["zqxwvname"])) == 2


PESTER = sorted((Path(__file__).parent / "pester").glob("*.Tests.ps1"))


def test_pester_suites_exist():
    assert [p.name for p in PESTER] == ["Hosts.Tests.ps1", "Install.Tests.ps1"]


@pytest.mark.parametrize("path", PESTER, ids=[p.name for p in PESTER])
def test_pester_tests_parse_for_windows_powershell(grammars, path):
    source = path.read_bytes()
    assert source.isascii()
    for name, parser in grammars.items():
        tree = parser.parse(source)
        assert pwsh.problems(tree) == [], name
    assert pwsh.ps7_only(grammars["tree-sitter-pwsh"].parse(source)) == []


def test_pester_covers_the_hosts_shapes():
    """The hosts shapes the issue names are each a Describe case."""
    text = (Path(__file__).parent / "pester" / "Hosts.Tests.ps1").read_text()
    for shape in ("'utf8-bom'", "'utf8'", "'ansi'", "'lf'", "'crlf'", "'no-final-newline'", "'old-block'", "'foreign'"):
        assert shape in text


def test_windows_workflow_runs_pester_on_both_powershells():
    import yaml

    workflow = yaml.safe_load((Path(__file__).parent.parent / ".github" / "workflows" / "windows.yml").read_text())
    job = workflow["jobs"]["pester"]
    assert job["runs-on"].startswith("windows")
    assert job["strategy"]["matrix"]["shell"] == ["powershell", "pwsh"]
    steps = " ".join(step.get("run", "") for step in job["steps"])
    assert "gen-bundle --ip 127.0.0.13 --name py" in steps and "Invoke-Pester -Path tests/pester" in steps


@pytest.mark.parametrize("inputs", SCOPES, ids=["machine", "user", "per-user-python"])
@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_function_results_are_collected_before_counting(grammars, inputs, script):
    tree = grammars["tree-sitter-pwsh"].parse(pwsh.script_text(bundle(**inputs)[script]))
    assert pwsh.unwrapped_counts(tree) == []


def test_the_count_check_can_fail(grammars):
    tree = grammars["tree-sitter-pwsh"].parse(
        b"function Get-Task {\r\n    return @(1)\r\n}\r\n$task = Get-Task\r\n$ok = @(Get-Task)\r\nif ($task.Count -eq 0) { }\r\nif ($ok.Count) { }\r\n"
    )
    assert [p.split(":")[0] for p in pwsh.unwrapped_counts(tree)] == ["line 4"]
