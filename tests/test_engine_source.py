"""The engine's source, templates/engine/: a PowerShell module of its own, and the one file every
bundle carries, built from it; and PSScriptAnalyzer's settings, which the Windows workflow runs
over both (no PowerShell runs here: these checks read the files)."""

from __future__ import annotations

import re

import pytest

from generator import __version__, engine_source
from generator.render import ENGINE_OUTPUT, bundle_files, engine
from generator.spec import build_spec
from generator.templating import templates_dir

from conftest import CANONICAL, REPO
from support import pwsh

SOURCE = templates_dir() / engine_source.FOLDER
LOADER = SOURCE / engine_source.LOADER
SETTINGS = REPO / "PSScriptAnalyzerSettings.psd1"
WORKFLOW = REPO / ".github" / "workflows" / "windows.yml"

# The rules of PSScriptAnalyzer 1.25.0, the version the Windows workflow installs: from its
# docs/Rules/README.md at the tag 1.25.0 (the rule table), each name with the "PS" that
# GetName() puts before it (Strings.resx's NameSpaceFormat "{0}{1}", GetSourceName() "PS").
RULES = frozenset(
    "PS" + name
    for name in """
    AlignAssignmentStatement AvoidAssignmentToAutomaticVariable AvoidDefaultValueForMandatoryParameter
    AvoidDefaultValueSwitchParameter AvoidExclaimOperator AvoidGlobalAliases AvoidGlobalFunctions
    AvoidGlobalVars AvoidInvokingEmptyMembers AvoidLongLines AvoidMultipleTypeAttributes
    AvoidNullOrEmptyHelpMessageAttribute AvoidOverwritingBuiltInCmdlets AvoidReservedWordsAsFunctionNames
    AvoidSemicolonsAsLineTerminators AvoidShouldContinueWithoutForce AvoidTrailingWhitespace
    AvoidUsingAllowUnencryptedAuthentication AvoidUsingBrokenHashAlgorithms AvoidUsingCmdletAliases
    AvoidUsingComputerNameHardcoded AvoidUsingConvertToSecureStringWithPlainText
    AvoidUsingDeprecatedManifestFields AvoidUsingDoubleQuotesForConstantString AvoidUsingEmptyCatchBlock
    AvoidUsingInvokeExpression AvoidUsingPlainTextForPassword AvoidUsingPositionalParameters
    AvoidUsingUsernameAndPasswordParams AvoidUsingWMICmdlet AvoidUsingWriteHost DSCDscExamplesPresent
    DSCDscTestsPresent DSCReturnCorrectTypesForDSCFunctions DSCStandardDSCFunctionsInResource
    DSCUseIdenticalMandatoryParametersForDSC DSCUseIdenticalParametersForDSC DSCUseVerboseMessageInDSCResource
    MisleadingBacktick MissingModuleManifestField PlaceCloseBrace PlaceOpenBrace
    PossibleIncorrectComparisonWithNull PossibleIncorrectUsageOfAssignmentOperator
    PossibleIncorrectUsageOfRedirectionOperator ProvideCommentHelp ReservedCmdletChar ReservedParams
    ReviewUnusedParameter ShouldProcess UseApprovedVerbs UseBOMForUnicodeEncodedFile UseCmdletCorrectly
    UseCompatibleCmdlets UseCompatibleCommands UseCompatibleSyntax UseCompatibleTypes UseConsistentIndentation
    UseConsistentWhitespace UseCorrectCasing UseDeclaredVarsMoreThanAssignments
    UseLiteralInitializerForHashtable UseOutputTypeCorrectly UseProcessBlockForPipelineCommand
    UsePSCredentialType UseShouldProcessForStateChangingFunctions UseSingularNouns UseSupportsShouldProcess
    UseToExportFieldsInManifest UseUsingScopeModifierInNewRunspaces UseUTF8EncodingForHelpFile
    """.split()
)


def read(name: str) -> str:
    return (SOURCE / name).read_text(encoding="utf-8")


# ---- the module: one list of parts, each file loadable and parsed alone ----------------------


def test_the_loader_lists_exactly_the_parts_in_its_folder():
    parts = engine_source.part_names(read(engine_source.LOADER))
    assert len(parts) == len(set(parts)) >= 20
    on_disk = {path.name for path in SOURCE.iterdir()}
    assert on_disk == {engine_source.LOADER, engine_source.VALUES} | {part + engine_source.SUFFIX for part in parts}


def test_the_part_list_is_read_only_in_its_one_form():
    """The control: a list the build could misread is refused, not half read."""
    good = "$EngineParts = @(\n    'engine-core'\n    'base'\n)\n"
    assert engine_source.part_names(good) == ["engine-core", "base"]
    for bad in (
        good.replace("'base'", "'base', 'task'"),
        good.replace("    'base'\n", "    # 'base'\n"),
        good + good,
        "",
    ):
        with pytest.raises(ValueError, match="EngineParts"):
            engine_source.part_names(bad)


def test_the_loader_loads_the_values_then_each_part_of_its_list():
    loader = read(engine_source.LOADER)
    values_at = loader.index(". (Join-Path $PSScriptRoot 'values.ps1')")
    assert values_at < loader.index("$EngineParts = @(")
    assert '. (Join-Path $PSScriptRoot "$EnginePart.ps1")' in loader
    assert "foreach ($EnginePart in $EngineParts)" in loader
    # What the loader sets for the whole module, the built engine sets too, in its header.
    built = engine(__version__)[1].decode("utf-8-sig").replace("\r\n", "\n")
    settings = [line for line in loader.splitlines() if line.startswith(("Set-StrictMode", "$ErrorActionPreference"))]
    assert len(settings) == 2
    head = built[: built.index("# ==== The same in every bundle")]
    assert [line for line in head.splitlines() if line in settings] == settings


@pytest.mark.parametrize("name", sorted(path.name for path in SOURCE.iterdir()))
def test_each_file_of_the_source_parses_alone(grammars, name):
    source = (SOURCE / name).read_bytes()
    assert source.isascii() and b"\r" not in source
    for grammar, parser in grammars.items():
        assert pwsh.problems(parser.parse(source)) == [], grammar
    assert pwsh.ps7_only(grammars["tree-sitter-pwsh"].parse(source)) == []


# ---- the build: the header, the values, then the parts as they are ---------------------------


def joined(version: str) -> bytes:
    """The engine as the source says it is: its header down to the values' heading, the values
    as values.ps1 holds them, then each part of the loader's list, a blank line between two."""
    built = engine(version)[1].decode("utf-8-sig").replace("\r\n", "\n")
    header = built[: built.index("# ==== The same in every bundle")]
    values = read(engine_source.VALUES)
    values = values[values.index("# ==== The same in every bundle") :]
    parts = [read(part + ".ps1").removesuffix("\n") for part in engine_source.part_names(read(engine_source.LOADER))]
    text = header + values + "\n" + "\n\n".join(parts) + "\n"
    return b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")


def test_the_built_engine_is_its_parts_joined_in_the_loaders_order():
    assert engine(__version__)[1] == joined(__version__)
    header = engine(__version__)[1].decode("utf-8-sig").split("\r\n# ==== The same in every bundle")[0]
    assert f"# gen-bundle {__version__}: the engine of every bundle this version makes." in header
    assert [line for line in header.splitlines() if line and not line.startswith("#")] == [
        "Set-StrictMode -Version 3.0",
        "$ErrorActionPreference = 'Stop'",
    ]


def test_the_join_check_can_fail(monkeypatch):
    """The control: two parts swapped in the list, or a part's text changed, and the check fails."""
    real = engine_source.build
    parts = engine_source.part_names(read(engine_source.LOADER))

    def swapped(version, read_file):
        def reader(name):
            text = read_file(name)
            return text.replace(f"    '{parts[1]}'\n    '{parts[2]}'\n", f"    '{parts[2]}'\n    '{parts[1]}'\n")

        return real(version, reader)

    monkeypatch.setattr(engine_source, "build", swapped)
    assert engine(__version__)[1] != joined(__version__)
    monkeypatch.setattr(engine_source, "build", lambda version, read_file: real(version, read_file) + "# more\n")
    assert engine(__version__)[1] != joined(__version__)


def test_the_built_engine_is_the_same_for_another_version_but_its_values():
    """Built from the source for any version (the wheel carries only its own version built)."""
    other = engine("9.9.9")[1].decode("utf-8-sig")
    ours = engine(__version__)[1].decode("utf-8-sig")
    assert other.replace("9.9.9", __version__) == ours
    assert "$EngineVersion     = '9.9.9'\r\n" in other


def test_the_source_and_the_settings_are_no_file_of_a_bundle():
    names = bundle_files(build_spec(**CANONICAL))
    assert [name for name in names if name.endswith((".psd1", ".ps1"))] == [
        "detect.ps1",
        "install.ps1",
        "uninstall.ps1",
    ]
    assert ENGINE_OUTPUT.template not in names and engine_source.VALUES not in names
    # The settings stay out of templates/, which the wheel carries.
    assert not SETTINGS.resolve().is_relative_to(templates_dir().resolve())


# ---- PSScriptAnalyzer's settings -------------------------------------------------------------


def settings_rules(tree) -> tuple[list[tuple[str, bool]], list[str]]:
    """(each excluded rule, whether a comment stands right above it), and the rules configured."""
    (table,) = [node for node in pwsh.walk(tree.root_node) if node.type == "hash_literal_expression"][:1]
    entries = {
        entry.named_children[0].text.decode(): entry
        for entry in table.named_children[0].named_children
        if entry.type == "hash_entry"
    }
    excluded = []
    for node in pwsh.walk(entries["ExcludeRules"]):
        if node.type == "string_literal":
            statement = node
            while statement.parent.type != "statement_list":
                statement = statement.parent
            # the comment above the first element stands before the list's statements
            above = statement.prev_named_sibling or statement.parent.prev_named_sibling
            excluded.append((pwsh.decode_verbatim(node.text.decode()), above is not None and above.type == "comment"))
    configured = [
        node.text.decode()
        for node in pwsh.walk(entries["Rules"])
        if node.type == "key_expression" and node.text.decode().startswith("PS")
    ]
    return excluded, configured


def test_the_settings_name_real_rules_and_say_why_each_is_off(grammars):
    source = SETTINGS.read_bytes()
    assert source.isascii()
    for grammar, parser in grammars.items():
        assert pwsh.problems(parser.parse(source)) == [], grammar
    excluded, configured = settings_rules(grammars["tree-sitter-pwsh"].parse(source))
    assert excluded and configured
    assert {name for name, _ in excluded} <= RULES
    assert set(configured) <= RULES
    assert [name for name, commented in excluded if not commented] == []
    # Every rule named anywhere in the file is a real one, in comments too.
    assert set(re.findall(r"(?<![$\w])PS[A-Z]\w+", source.decode())) - {"PSScriptAnalyzer"} <= RULES
    assert "PSUseCompatibleSyntax" in configured


def test_the_settings_check_can_fail(grammars):
    """The control: a rule name misspelled, and an exclusion with no comment above it."""
    parse = grammars["tree-sitter-pwsh"].parse
    excluded, _ = settings_rules(
        parse(
            b"@{\n    ExcludeRules = @(\n        # why\n        'PSAvoidUsingWriteHost'\n        'PSAvoidWriteHost'\n    )\n    Rules = @{}\n}\n"
        )
    )
    assert excluded == [("PSAvoidUsingWriteHost", True), ("PSAvoidWriteHost", False)]
    assert {name for name, _ in excluded} - RULES == {"PSAvoidWriteHost"}


def test_the_windows_workflow_lints_the_source_and_the_bundle(grammars):
    import yaml

    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    steps = workflow["jobs"]["pester"]["steps"]
    (step,) = [step for step in steps if "Invoke-ScriptAnalyzer" in step.get("run", "")]
    made = next(i for i, s in enumerate(steps) if '--out "$env:RUNNER_TEMP\\bundle"' in s.get("run", ""))
    assert steps.index(step) > made
    run = step["run"]
    assert "'templates/engine'" in run and '"$env:RUNNER_TEMP\\bundle"' in run
    assert '"$env:RUNNER_TEMP\\envbundle"' in run  # its install.ps1 has the environment's steps
    assert "-Settings ./PSScriptAnalyzerSettings.psd1" in run
    assert "-Severity Warning, Error, ParseError" in run
    assert "if ($findings.Count -gt 0) { exit 1 }" in run
    assert (REPO / "templates" / "engine").is_dir() and SETTINGS.is_file()
