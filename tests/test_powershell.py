"""install.ps1 and uninstall.ps1: parsed by two PowerShell grammars."""

from __future__ import annotations

import pytest

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
