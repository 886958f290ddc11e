"""install.ps1, uninstall.ps1 and detect.ps1 against PowerShell's own rules and Microsoft's
API reference, in every rendered variant (scope x window x with and without --env).

No PowerShell runs here, so each check reads the scripts and compares them with reference
data: PowerShell's tokenizer rules (support/pstoken.py, from PowerShell's source), the
cmdlets' parameter tables of Microsoft's reference pages (../shared/reference/powershell/
cmdlets.json), the .NET Framework 4.8 reference assemblies (support/netref.py, read with
Mono.Cecil), Mono's C# compiler against them (support/addtype.py), the tables of CIM
classes and Win32 functions below, each with its Microsoft page. Each check also runs on a
few planted lines that it must refuse: a check that cannot fail shows up here. Only the
Windows workflow (.github/workflows/windows.yml) loads the scripts in PowerShell.
"""

from __future__ import annotations

import ast
import re
import shutil

import pytest

from generator.layout import Layout
from generator.render import render
from generator.spec import build_spec

from conftest import CANONICAL, REPO, SHARED, need
from support import addtype, netref, program, pscommands, pshash, pstoken, pstypes, pwsh

REFERENCE = SHARED / "reference" / "powershell" / "cmdlets.json"
SCRIPTS = ("install.ps1", "uninstall.ps1", "detect.ps1")
ENGINE = "engine"  # the engine, gen-bundle-<version>.psm1, by this name among the scripts of a variant
SHAPES = {
    "machine-hidden": {},
    "machine-minimized": {"window": "minimized"},
    "user-hidden": {"scope": "user", "user": "CONTOSO\\alice"},
    "user-minimized": {"scope": "user", "user": "CONTOSO\\alice", "window": "minimized"},
}
# Windows PowerShell 5.1 starts with these assemblies loaded (mscorlib, and those its own
# System.Management.Automation.dll needs for the language: System, System.Core, System.Xml
# for [xml]); a type of any other needs Add-Type -AssemblyName before the script uses it.
LOADED = frozenset({"mscorlib", "System", "System.Core", "System.Xml"})


@pytest.fixture(scope="module")
def variants(windows_env) -> dict[str, dict[str, bytes]]:
    """Every rendered variant: each shape, without and with the bundle's own environment."""
    found = {}
    for name, inputs in SHAPES.items():
        found[name] = render(build_spec(**CANONICAL, **inputs))
        found[name + "-env"] = render(build_spec(**CANONICAL, **inputs, env=True), env=windows_env)
    return found


@pytest.fixture(scope="module")
def trees(grammar, variants) -> dict[tuple[str, str], object]:
    """Each variant's scripts, and its engine (the same bytes in every variant: checked in each all the same)."""
    return {
        (variant, script): grammar.parse(pwsh.script_text(source(files, script)))
        for variant, files in variants.items()
        for script in (*SCRIPTS, ENGINE)
    }


def source(files: dict[str, bytes], script: str) -> bytes:
    return files[program.engine_name(files) if script == ENGINE else script]


# What start.ps1 and detect.ps1 hand the engine besides the values block, and what the engine keeps.
HANDED = frozenset({"bundleroot", "scriptname", "whatifpreference", "verbosepreference", "cmdlet"})


def values_of(variants) -> frozenset[str]:
    """Every key of every script's values block: the engine's functions read them as variables."""
    parser = pwsh.parsers()["tree-sitter-pwsh"]
    keys = set()
    for files in variants.values():
        for script in SCRIPTS:
            keys |= {k.lower() for k in pwsh.assignments(parser.parse(pwsh.script_text(files[script])))}
    return frozenset(keys) | HANDED


@pytest.fixture(scope="module")
def reference() -> dict:
    need(REFERENCE.is_file(), f"Microsoft's cmdlet tables in {REFERENCE}")
    return pscommands.reference(REFERENCE)


@pytest.fixture(scope="module")
def dotnet(tmp_path_factory) -> netref.NetRef:
    reason = netref.available()
    need(reason is None, f".NET Framework 4.8 reference assemblies and Mono: {reason}")
    return netref.load(tmp_path_factory.mktemp("netref"))


def parse(grammar, text: str):
    return grammar.parse(text.encode())


# ---- 0. PowerShell's own tokenizer and parser rules ---------------------------------------

# about_Automatic_Variables and about_Preference_Variables (reference/5.1): what a script may
# read without setting it. $IsWindows and the other 7.x variables are not here: under
# Set-StrictMode Windows PowerShell 5.1 stops at them.
AUTOMATIC = frozenset(
    {
        "$",
        "?",
        "^",
        "_",
        "args",
        "consolefilename",
        "error",
        "event",
        "eventargs",
        "eventsubscriber",
        "executioncontext",
        "false",
        "foreach",
        "home",
        "host",
        "input",
        "lastexitcode",
        "matches",
        "myinvocation",
        "nestedpromptlevel",
        "null",
        "pid",
        "profile",
        "psboundparameters",
        "pscmdlet",
        "pscommandpath",
        "psculture",
        "psdebugcontext",
        "pshome",
        "psitem",
        "psscriptroot",
        "pssenderinfo",
        "psuiculture",
        "psversiontable",
        "pwd",
        "sender",
        "shellid",
        "stacktrace",
        "switch",
        "this",
        "true",
        "confirmpreference",
        "debugpreference",
        "erroractionpreference",
        "errorview",
        "formatenumerationlimit",
        "informationpreference",
        "progresspreference",
        "psdefaultparametervalues",
        "psmoduleautoloadingpreference",
        "verbosepreference",
        "warningpreference",
        "whatifpreference",
    }
)


def undefined_variables(tree, source: bytes, given: frozenset[str] = frozenset()) -> list[str]:
    """Variables read (in code, strings and here-strings, as PowerShell's tokenizer names them)
    that the script never sets (nor, for the engine, the scripts hand it: ``given``):
    Set-StrictMode -Version 3.0 makes each one VariableIsUndefined."""
    defined = set(given)
    for node in pwsh.walk(tree.root_node):
        target = None
        if node.type == "left_assignment_expression":
            target = (
                node.children[0]
                if node.child_count == 1
                else next((c for c in node.children if c.type in ("unary_expression", "variable")), None)
            )
            while target is not None and target.type != "variable" and target.child_count:
                target = (
                    target.children[-1]
                    if target.type in ("unary_expression", "cast_expression", "expression_with_unary_operator")
                    else None
                )
        elif node.type in ("script_parameter", "foreach_statement"):
            target = next((c for c in node.children if c.type == "variable"), None)
        if target is not None and target.type == "variable":
            defined.add(target.text.decode()[1:].lower().split(":")[-1])
    found = []
    for variable in pstoken.variables(source):
        name = variable.bare.lower()
        if variable.qualifier not in (None, "script", "global", "local", "private", "variable"):
            continue  # $env:X, $using:x
        if name not in defined and name not in AUTOMATIC:
            found.append(f"line {variable.line}: ${variable.name}")
    return found


def parser_problems(tree) -> list[str]:
    """What PowerShell's parser refuses and the grammars take (ParserStrings.resx ids)."""
    problems = []
    for node in pwsh.walk(tree.root_node):
        if node.type == "hash_literal_body":
            keys = [
                e.children[0].text.decode().strip("'\"").lower()
                for e in node.children
                if e.type == "hash_entry"
                and e.children[0].type == "key_expression"
                and not e.children[0].text.startswith((b"$", b"("))
            ]
            for key in sorted({k for k in keys if keys.count(k) > 1}):
                problems.append(f"line {node.start_point[0] + 1}: DuplicateKeyInHashLiteral '{key}'")
        elif node.type == "parameter_list":
            names = [
                v.text.decode().lower()
                for p in node.children
                if p.type == "script_parameter"
                for v in p.children
                if v.type == "variable"
            ]
            for name in sorted({n for n in names if names.count(n) > 1}):
                problems.append(f"line {node.start_point[0] + 1}: DuplicateFormalParameter {name}")
    text = tree.root_node.text.decode()
    if re.search(r"^\[CmdletBinding\b", text, re.M) and not re.search(
        r"^\[CmdletBinding[^\n]*\]\s*\r?\nparam\s*\(", text, re.M
    ):
        problems.append("UnexpectedAttribute: [CmdletBinding()] stands before no param() block")
    return problems


def test_powershell_would_load_every_variant(trees, variants):
    """No construct on which PowerShell's tokenizer or parser stops the whole file, and no
    variable read that Set-StrictMode stops at."""
    found = []
    given = values_of(variants)
    for (variant, script), tree in trees.items():
        data = source(variants[variant], script)
        found += [f"{variant} {script}: {f}" for f in pstoken.findings(data)]
        found += [f"{variant} {script}: {p}" for p in parser_problems(tree)]
        found += [
            f"{variant} {script}: VariableIsUndefined {v}"
            for v in undefined_variables(tree, data, given if script == ENGINE else frozenset())
        ]
    assert found == []
    # Not vacuous: the scan read every variable of every script, strings included.
    reads = pstoken.variables(source(variants["machine-hidden"], ENGINE))
    assert len(reads) > 1000 and any(v.in_string and v.name == "PythonExe" for v in reads)


TOKENIZER_CONTROLS = {
    # rule: a line PowerShell refuses or stops at
    "InvalidVariableReferenceWithDrive": '$m = "installed for $PythonExe: before"',
    "InvalidVariableReference": '$m = "$global: x"',
    "UnknownVariableDrive": '$m = "$name:value"',
    "EmptyVariableReference": "$m = ${}",
    "OpenBraceNeedsToBeBackTickedInVariableName": "$m = ${a{b}",
    "IncompleteDollarVariableReference": "$m = ${abc",
    "UnexpectedCharactersAfterHereStringHeader": '$m = @" text\r\nbody\r\n"@',
    "WhitespaceBeforeHereStringFooter": "$m = @'\r\nbody\r\n  '@",
    "TerminatorExpectedAtEndOfString": "$m = 'never closed",
    "MissingTerminatorMultiLineComment": "<# never closed",
    "IncompleteDollarSubexpressionReference": '$m = "$(1 + 2"',
    "TypographicQuote": "$m = 'it\u2019s'",
    "BacktickBeforeSpace": "Write-Output a `  \r\n    b",
}


@pytest.mark.parametrize("rule", sorted(TOKENIZER_CONTROLS))
def test_each_tokenizer_rule_can_fail(rule):
    assert rule in [f.rule for f in pstoken.findings(TOKENIZER_CONTROLS[rule])]


def test_the_tokenizer_takes_what_powershell_takes():
    """The fixed forms of the same lines, and the escapes gen-bundle writes, pass."""
    fine = (
        '$m = "installed for ${PythonExe}: before $x`: $($y): $env:TEMP $script:z"\r\n'
        '$q = \'it\u2019\u2019s\'\r\n$h = @"\r\n  $a "@ inside\r\n"@\r\n[IO.File]::ReadAllBytes($p)\r\n'
        "Write-Output a `\r\n    b\r\n# $comment: in a comment\r\n"
    )
    assert pstoken.findings(fine) == []
    names = [v.name for v in pstoken.variables(fine)]
    assert names == ["m", "PythonExe", "x", "y", "env:TEMP", "script:z", "q", "h", "a", "p"]
    assert [v.name for v in pstoken.variables('"Is $name? $a$b"')] == ["name?", "a", "b"]


def test_the_variable_and_parser_checks_can_fail(grammar):
    source = (
        '$known = 1\r\nWrite-Output "$known? $unknownName $known"\r\n'
        "$receipt = @{ bundle = 1; Bundle = 2 }\r\nfunction F {\r\n    param($a, $A)\r\n}\r\n"
        "[CmdletBinding()]\r\n$x = 1\r\n"
    )
    tree = parse(grammar, source)
    assert undefined_variables(tree, source.encode()) == ["line 2: $known?", "line 2: $unknownName"]
    assert parser_problems(tree) == [
        "line 3: DuplicateKeyInHashLiteral 'bundle'",
        "line 5: DuplicateFormalParameter $a",
        "UnexpectedAttribute: [CmdletBinding()] stands before no param() block",
    ]


# ---- 1. Cmdlets and parameters, against Microsoft's reference tables ---------------------

# Where a reference page contradicts itself, the page's SYNTAX block wins; each one is named.
ERRATA = {
    # Invoke-CimMethod's -ResourceUri table says "Required: True (ResourceUriSessionSet,
    # ResourceUriComputerSet), False (CimInstanceSessionSet, CimInstanceComputerSet)" under
    # "Parameter Sets: CimInstanceComputerSet, CimInstanceSessionSet"; the SYNTAX block shows
    # [-ResourceUri <Uri>], optional, in both CimInstance sets. reference/5.1 and 7.4/CimCmdlets/Invoke-CimMethod.md.
    ("Invoke-CimMethod", "ResourceUri"): {"CimInstanceComputerSet": False, "CimInstanceSessionSet": False},
}


def corrected(signature: pscommands.Signature) -> pscommands.Signature:
    parameters = []
    for p in signature.parameters:
        fix = ERRATA.get((signature.name, p.name))
        parameters.append(
            pscommands.Parameter(p.name, p.aliases, p.switch, p.sets, p.position, {**p.required, **fix}, p.type)
            if fix
            else p
        )
    return pscommands.Signature(signature.name, tuple(parameters), signature.sets, signature.source)


def command_problems(tree, ref: dict, engine=None) -> tuple[list[str], int]:
    """Every command bound for each edition that reaches it (a function of the script's, or of the
    engine it loads, against its param()); and how many were bound."""
    problems, bound = [], 0
    own = pscommands.functions(tree) | (pscommands.functions(engine) if engine is not None else {})
    for call in pscommands.calls(tree):
        where = f"line {call.line}: {call.name}"
        if pscommands.is_native(call):
            continue
        signature = own.get(call.name.lower())
        if signature is not None:
            problems += [f"{where}: {p}" for p in pscommands.bind(call, signature)]
            bound += 1
            continue
        for edition in sorted(call.editions):
            signature = pscommands.cmdlet(ref, call.name, edition)
            if signature is None:
                problems.append(f"{where}: no such cmdlet in {edition} (nor in Windows' inbox modules)")
                continue
            problems += [f"{where} ({edition}): {p}" for p in pscommands.bind(call, corrected(signature))]
            bound += 1
    return problems, bound


def native_problems(tree) -> list[str]:
    """A program is named by its full path under %SystemRoot% (no lookup through PATH), and runs
    with $ErrorActionPreference 'Continue' set before it in its block: Windows PowerShell 5.1
    turns each line a program writes to a redirected error stream into an error record, which
    'Stop' makes the end of the script."""
    problems = []
    for call in pscommands.calls(tree):
        if not pscommands.is_native(call):
            continue
        line = f"line {call.line}: {call.name}"
        name = call.name.strip("'\"")
        if not (name.lower().startswith("$env:systemroot\\") or name.startswith("$")):
            problems.append(f"{line}: not named by its full path under $env:SystemRoot")
        block = call.node
        while block is not None and block.type not in ("statement_block", "program", "script_block"):
            block = block.parent
        before = block.text.decode()[: call.node.start_byte - block.start_byte] if block is not None else ""
        settings = re.findall(r"\$ErrorActionPreference\s*=\s*'(\w+)'", before)
        if not settings or settings[-1].lower() != "continue":
            problems.append(f"{line}: runs under $ErrorActionPreference 'Stop'")
    return problems


def test_every_command_binds_in_every_edition_that_runs_it(trees, reference):
    found, bound = [], 0
    for (variant, script), tree in trees.items():
        problems, count = command_problems(tree, reference, trees[(variant, ENGINE)])
        found += [f"{variant} {script}: {p}" for p in problems]
        found += [f"{variant} {script}: {p}" for p in native_problems(tree)]
        bound += count
    assert found == []
    assert bound > 1000  # every call of every variant, in each edition


CMDLET_CONTROLS = {
    "Get-Content -LiteralPath $p -Tial 5": "-Tial is no parameter of Get-Content",
    "Get-Content -LiteralPath $p -AsByteStream": "-AsByteStream is no parameter of Get-Content (5.1)",
    "Get-Content -Path $p -LiteralPath $q": "are in no one parameter set of Get-Content",
    "Stop-Process -Force": "mandatory -Id not given",
    "Remove-Item -LiteralPath $p -Recurse:'yes'": "-Recurse is a switch",
    "Remove-Item -LiteralPath $p -Force $true": "-Force is a switch: $true after it is not its value",
    "Get-ChildItem -LiteralPath $p -F": "-F is ambiguous",
    "Get-Content -LiteralPath $p -Encoding Byte": "-Encoding Byte is not a value both editions take",
    "Get-Item -LiteralPath $p -ProgressAction SilentlyContinue": "-ProgressAction is no parameter of Get-Item (5.1)",
    # Planted: the same parameter splatted from a hashtable slipped through.
    "$opts = @{ LiteralPath = $p; ProgressAction = 'SilentlyContinue' }\r\nGet-Item @opts": (
        "-ProgressAction is no parameter of Get-Item (5.1) (splatted from @opts)"
    ),
    "Invoke-Nothing -Now": "no such cmdlet in 5.1",
    "Register-ScheduledTask -TaskName a -Xml $x -Action $a": "are in no one parameter set of Register-ScheduledTask",
    "function Set-It {\r\n    param([string]$Path, [switch]$Force)\r\n}\r\nSet-It -Path a -Recurse": "-Recurse is no parameter of Set-It (function)",
    "function Set-It {\r\n    param([string]$Path)\r\n}\r\nSet-It a b": "no position left for 'b'",
    "function Set-It {\r\n    param([string]$Path)\r\n}\r\nSet-It -Path a -ErrorAction Stop": "-ErrorAction is no parameter of Set-It (function)",
}


@pytest.mark.parametrize("line", sorted(CMDLET_CONTROLS))
def test_the_command_check_can_fail(grammar, reference, line):
    problems, _ = command_problems(parse(grammar, line), reference)
    assert any(CMDLET_CONTROLS[line] in p for p in problems), problems


# Cmdlets whose -WhatIf does not touch what the scripts use them for.
WHATIF_IGNORED = {
    # ShouldProcess only for -MemberName; a script block runs under -WhatIf all the same
    # (PowerShell's InternalCommands.cs: NoShouldProcessForScriptBlockSet).
    "foreach-object",
}


def whatif_problems(tree, ref: dict) -> list[str]:
    """A cmdlet that honours -WhatIf (its table lists the parameter) and that the script calls to
    read, not to change anything, passes -WhatIf:$false: under the script's -WhatIf it would
    otherwise do nothing, and the script would go on with nothing (Invoke-CimMethod finding no
    logged-on user). The cmdlets that change the machine are checked to sit under
    ShouldProcess (test_powershell.py)."""
    problems = []
    for call in pscommands.calls(tree):
        name = call.name.lower()
        if pscommands.is_native(call) or name in pwsh.STATE_CHANGING_COMMANDS or name in WHATIF_IGNORED:
            continue
        signature = pscommands.cmdlet(ref, call.name, "5.1")
        if signature is None or not any(p.name == "WhatIf" for p in signature.parameters):
            continue
        if not re.search(r"-WhatIf:\$false\b", call.node.text.decode(), re.I):
            problems.append(f"line {call.line}: {call.name} honours -WhatIf and is not told -WhatIf:$false")
    return problems


def test_read_only_calls_of_whatif_cmdlets_say_whatif_false(trees, reference):
    found = []
    for (variant, script), tree in trees.items():
        found += [f"{variant} {script}: {p}" for p in whatif_problems(tree, reference)]
    assert found == []


def test_the_whatif_check_can_fail(grammar, reference):
    source = (
        "$owner = Invoke-CimMethod -InputObject $explorer -MethodName GetOwner -ErrorAction SilentlyContinue\r\n"
        "$sid = Invoke-CimMethod -InputObject $e -MethodName GetOwnerSid -WhatIf:$false\r\n"
    )
    assert whatif_problems(parse(grammar, source), reference) == [
        "line 1: Invoke-CimMethod honours -WhatIf and is not told -WhatIf:$false"
    ]


def test_the_command_check_follows_the_edition_branches(grammar, reference):
    """A parameter only 7.4 has is fine on the branch only 7.4 takes, and refused on the other."""
    source = (
        "if ($PSVersionTable.PSEdition -eq 'Core') {\r\n    Get-Content -LiteralPath $p -AsByteStream\r\n"
        "} else {\r\n    Get-Content -LiteralPath $p -Encoding Byte -AsByteStream\r\n}\r\n"
    )
    problems, _ = command_problems(parse(grammar, source), reference)
    assert [p.split(":")[0] for p in problems] == ["line 4", "line 4"], problems
    assert all("(5.1)" in p for p in problems)


def test_the_native_check_can_fail(grammar):
    source = (
        "& netsh.exe int ipv4 show excludedportrange\r\n"
        "$ErrorActionPreference = 'Continue'\r\n& \"$env:SystemRoot\\System32\\ipconfig.exe\" /flushdns\r\n"
        "$ErrorActionPreference = 'Stop'\r\n& $nativePowerShell @forward\r\n"
    )
    assert native_problems(parse(grammar, source)) == [
        "line 1: netsh.exe: not named by its full path under $env:SystemRoot",
        "line 1: netsh.exe: runs under $ErrorActionPreference 'Stop'",
        "line 5: $nativePowerShell: runs under $ErrorActionPreference 'Stop'",
    ]


# ---- 2. .NET types and members, against the .NET Framework 4.8 reference assemblies -------


def dotnet_problems(tree, dotnet, cim=None, values=None) -> tuple[list[str], pstypes.Checker]:
    checker = pshash.HashChecker(tree, dotnet, cim if cim is not None else CIM, LOADED, values)
    problems = [p for p in checker.run() if not p.split(": ", 1)[1].startswith(("CIM class", "Win32_", "MSFT_"))]
    return problems, checker


def variant_checkers(trees, dotnet, variant: str) -> dict[str, pshash.HashChecker]:
    """The checker of each script of a variant, run; then the engine's, which reads the values
    those scripts hand it (their values blocks, Initialize-GenBundle) as its own variables."""
    checkers = {}
    for script in SCRIPTS:
        checkers[script] = pshash.HashChecker(trees[(variant, script)], dotnet, CIM, LOADED)
        checkers[script].run()
    values = pshash.bundle_values(pshash.values_block(checkers[script]) for script in SCRIPTS)
    checkers[ENGINE] = pshash.HashChecker(trees[(variant, ENGINE)], dotnet, CIM, LOADED, values)
    checkers[ENGINE].run()
    return checkers


def test_every_dotnet_type_and_member_exists_in_framework_48(trees, dotnet):
    """Every type and member, also on values read out of a hash literal and, in the engine, on
    the values each script hands it (support/pshash.py)."""
    found = []
    for variant in sorted({variant for variant, _ in trees}):
        for script, checker in variant_checkers(trees, dotnet, variant).items():
            found += [f"{variant} {script}: {p}" for p in checker.problems]
    assert found == []


def test_the_dotnet_check_saw_the_members_and_the_branches(trees, dotnet):
    checker = variant_checkers(trees, dotnet, "machine-hidden-env")[ENGINE]
    assert checker.problems == []
    uses = {(u.what, u.receiver, u.member, u.args, tuple(sorted(u.editions))) for u in checker.uses}
    for use in [
        ("static", "System.IO.File", "ReadAllBytes", 1, ("5.1", "7.4")),
        ("instance", "System.IO.FileStream", "Position", None, ("5.1", "7.4")),  # [IO.File]::OpenRead's result
        ("instance", "System.IO.Compression.ZipArchiveEntry", "Open", 0, ("5.1", "7.4")),
        ("new", "System.IO.Compression.ZipArchive", "new", 2, ("5.1", "7.4")),
        ("instance", "System.Security.AccessControl.AuthorizationRule", "IdentityReference", None, ("5.1", "7.4")),
        ("static", "System.IO.Directory", "CreateDirectory", 2, ("5.1",)),  # .NET Framework only
    ]:
        assert use in uses, use
    # The .NET 5+ call stands on the branch 5.1 never takes, and the check knows it.
    core_only = [u for u in checker.uses if u.what == "type" and "FileSystemAclExtensions" in u.receiver]
    assert core_only and all(u.editions == {"7.4"} for u in core_only)
    assert dotnet.find_type("IO.FileSystemAclExtensions") is None  # not in .NET Framework 4.8


DOTNET_CONTROLS = {
    "[void][IO.FileSystemAclExtensions]::CreateDirectory($security, $Path)": "is no type of .NET Framework 4.8",
    "$p = [IO.Path]::GetFullPath($a, $b)": "takes no 2 arguments",
    # 0.3.3's receipt swap: no backup asked for, but PowerShell hands File.Replace "" instead.
    "[IO.File]::Replace($temp, $path, $null)": "gets $null for a string",
    "$b = [IO.File]::ReadAllBytesAsync($p)": "ReadAllBytesAsync() is no method",
    "$s = [IO.File]::OpenRead($p)\r\n$s.Length = 5": "[System.IO.FileStream].Length cannot be set",
    "$s = [IO.File]::OpenRead($p)\r\n$s.Rewind()": "[System.IO.FileStream].Rewind() is no method",
    "$r = New-Object IO.BinaryReader($a, $b, $c, $d)": "New-Object System.IO.BinaryReader takes no 4 arguments",
    "$z = New-Object IO.Compression.ZipArchive($stream)": "Add-Type -AssemblyName System.IO.Compression first",
    "$n = [uint]5": "[uint] is no type of .NET Framework 4.8 or of PowerShell",
    "$o = [ordered]$h": "[ordered] stands only before a hash literal",
    "$e = [Text.Encoding]::UTF8.GetBytez($t)": "[System.Text.Encoding].GetBytez() is no method",
    "foreach ($rule in (Get-Acl -LiteralPath $p).GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier]))"
    " {\r\n    $rule.Rights\r\n}": "[System.Security.AccessControl.AuthorizationRule].Rights is no property",
}


@pytest.mark.parametrize("line", sorted(DOTNET_CONTROLS))
def test_the_dotnet_check_can_fail(grammar, dotnet, line):
    problems, _ = dotnet_problems(parse(grammar, line), dotnet)
    assert any(DOTNET_CONTROLS[line] in p for p in problems), problems


def test_the_dotnet_check_follows_the_edition_branches(grammar, dotnet):
    source = (
        "if ($PSVersionTable.PSEdition -eq 'Core') {\r\n"
        "    [void][IO.FileSystemAclExtensions]::CreateDirectory($security, $Path)\r\n"
        "} else {\r\n    [void][IO.Directory]::CreateDirectory($Path, $security)\r\n}\r\n"
        "Add-Type -AssemblyName System.IO.Compression\r\n$z = New-Object IO.Compression.ZipArchive($s)\r\n"
    )
    assert dotnet_problems(parse(grammar, source), dotnet)[0] == []


# Values read out of a hash literal (support/pshash.py): each control is a script that passes, the
# planted line that must fail it, and what the check says. String.Contains(string, StringComparison),
# String.Replace(string, string, StringComparison) and String.GetHashCode(StringComparison) came with
# .NET Core 2.0/2.1; [ordered] makes an OrderedDictionary, which has Contains but no ContainsKey.
HASH_CONTROLS = {
    "a values block of strings": (
        "$Bundle = @{\r\n    BundleName = 'py'\r\n    BundlePort = 80\r\n}\r\n",
        "$ours = $Bundle.BundleName.Contains('p', [StringComparison]::Ordinal)\r\n",
        "line 5: [System.String].Contains() takes no 2 arguments in .NET Framework 4.8",
    ),
    "a static call's result, read by index": (
        "$h = @{ Path = [IO.Path]::GetTempPath() }\r\n",
        "$p = $h['Path'].Replace('\\', '/', [StringComparison]::Ordinal)\r\n",
        "line 2: [System.String].Replace() takes no 3 arguments in .NET Framework 4.8",
    ),
    "a cast, in a [pscustomobject]": (
        "$o = [pscustomobject][ordered]@{ Name = [string]$n; Size = 0 }\r\n",
        "$key = $o.Name.GetHashCode([StringComparison]::OrdinalIgnoreCase)\r\n",
        "line 2: [System.String].GetHashCode() takes no 1 arguments in .NET Framework 4.8",
    ),
    "an entry set in one function, read in another": (
        "$Run = @{}\r\nfunction Read-Task {\r\n    $Run.TaskXml = [Text.Encoding]::Unicode.GetString($bytes)\r\n}\r\n",
        "function Test-Xml {\r\n    return $Run.TaskXml.Contains('<Task', [StringComparison]::Ordinal)\r\n}\r\n",
        "line 6: [System.String].Contains() takes no 2 arguments in .NET Framework 4.8",
    ),
    "an [ordered] receipt": (
        "$receipt = [ordered]@{ version = '1' }\r\n",
        "if ($receipt.ContainsKey('version')) { }\r\n",
        "line 2: [System.Collections.Specialized.OrderedDictionary].ContainsKey() is no method in .NET Framework 4.8",
    ),
}


@pytest.mark.parametrize("control", sorted(HASH_CONTROLS))
def test_the_hashtable_value_check_can_fail(grammar, dotnet, control):
    """A call on a value read out of a hash literal is judged like any typed value's; the check
    before it (pstypes.Checker alone) gave such a value no type and let the planted line pass."""
    script, planted, said = HASH_CONTROLS[control]
    assert dotnet_problems(parse(grammar, script), dotnet)[0] == []
    assert dotnet_problems(parse(grammar, script + planted), dotnet)[0] == [said]
    assert pstypes.Checker(parse(grammar, script + planted), dotnet, CIM, LOADED).run() == []


def test_the_hashtable_value_check_reads_the_values_a_script_hands_the_engine(grammar, dotnet):
    """The engine reads each value of the script's values block as its own variable (Initialize-GenBundle
    sets them): a call on one is judged with the type the values block gives it - in the engine's
    functions, which run after Initialize-GenBundle, not in its top-level code, which runs before;
    and not where a function's parameter of that name stands for it."""
    script = parse(
        grammar,
        "$Bundle = @{\r\n    BundleName = 'py'\r\n    InstallDir = (Join-Path $env:ProgramFiles 'gen-bundle\\py')\r\n}\r\n",
    )
    values = pshash.bundle_values([pshash.values_block(pshash.HashChecker(script, dotnet, CIM, LOADED))])
    assert values == {"bundlename": pshash.STRING, "installdir": pshash.STRING}
    engine = (
        "$Cached = $BundleName\r\nfunction Get-Name {\r\n    param([object]$InstallDir)\r\n"
        "    return $InstallDir.Contains('x', [StringComparison]::Ordinal)\r\n}\r\n"
    )
    planted = "function Test-Ours {\r\n    return $BundleName.Contains('p', [StringComparison]::Ordinal)\r\n}\r\n"
    assert dotnet_problems(parse(grammar, engine), dotnet, values=values)[0] == []
    assert dotnet_problems(parse(grammar, engine + planted), dotnet, values=values)[0] == [
        "line 7: [System.String].Contains() takes no 2 arguments in .NET Framework 4.8"
    ]
    assert dotnet_problems(parse(grammar, engine + planted), dotnet)[0] == []  # without the values: untyped


def test_the_hashtable_value_check_leaves_what_it_cannot_know(grammar, dotnet):
    """An entry set to two types, a key the script computes, a value PowerShell would not unroll
    into one type: the check does not guess (support/pshash.py says what it leaves out)."""
    source = (
        "$h = @{ Path = [IO.Path]::GetTempPath(); Name = 'a' }\r\n$h.Path = 5\r\n"
        "$p = $h.Path.Replace('a', 'b', [StringComparison]::Ordinal)\r\n"
        "$g = @{ Name = 'a' }\r\n$g[$key] = 5\r\n$n = $g.Name.Contains('a', [StringComparison]::Ordinal)\r\n"
        "$list = @{ Names = @('a', 'b') }\r\n$f = $list.Names.Contains('a', [StringComparison]::Ordinal)\r\n"
    )
    assert dotnet_problems(parse(grammar, source), dotnet)[0] == []


def test_the_hashtable_value_check_types_every_variants_values(variants, grammar, dotnet):
    """Each values block's single-quoted and Join-Path values are strings, in every script of every
    variant, and so the engine takes them (else the engine's calls on them would go unchecked)."""
    for variant, files in variants.items():
        blocks = []
        for script in SCRIPTS:
            tree = grammar.parse(pwsh.script_text(files[script]))
            blocks.append(pshash.values_block(pshash.HashChecker(tree, dotnet, CIM, LOADED)))
            literal = next(
                pshash.unwrapped(n.children[-1])
                for n in pwsh.walk(tree.root_node)
                if n.type == "assignment_expression" and n.children[0].text.strip() == b"$Bundle"
            )
            strings = {
                pshash.literal_key(entry.children[0])
                for entry in pshash.entries(literal)
                if pshash.entry_value(entry).text.decode().startswith(("'", "(Join-Path"))
            }
            assert strings and all(blocks[-1][key] == pshash.STRING for key in strings), (variant, script)
        values = pshash.bundle_values(blocks)
        assert {"bundlename", "installdir", "taskname", "statedir"} <= {
            k for k, v in values.items() if v == pshash.STRING
        }


# ---- 3. Add-Type: C# compiled against .NET Framework 4.8, P/Invoke entry points ----------


def add_type_problems(tree) -> list[str]:
    """Each Add-Type of C# compiles against .NET Framework 4.8, declares the types the script
    then calls, and imports only Win32 functions of the table below that their DLL exports;
    each Add-Type of an assembly names one of .NET Framework 4.8."""
    problems = []
    sources = addtype.sources(tree)
    declared = {t.lower() for source in sources for t in source.types}
    for source in sources:
        errors = addtype.compile_errors(source)
        if errors:
            problems.append(f"line {source.line}: does not compile against .NET Framework 4.8: {errors}")
        for dll, entry in addtype.pinvokes(source.code):
            if (dll, entry) not in WIN32:
                problems.append(f"line {source.line}: {dll}.{entry} is not in the table of Win32 functions")
            elif not addtype.exported(dll, entry):
                problems.append(f"line {source.line}: {dll}.dll exports no {entry}")
    text = tree.root_node.text.decode()
    for called in re.findall(r"\[([\w.]+)\]::", text):
        namespace = called.rsplit(".", 1)[0].lower()
        if declared and any(t.startswith(namespace + ".") for t in declared) and called.lower() not in declared:
            problems.append(f"[{called}] is called, but the Add-Type sources declare only {sorted(declared)}")
    for node in pwsh.walk(tree.root_node):
        if node.type == "command" and pwsh._command_name(node) == "add-type":
            assembly = re.search(r"-AssemblyName\s+([\w.]+)", node.text.decode())
            if assembly and not (netref.REFERENCE_DIR / f"{assembly[1]}.dll").is_file():
                problems.append(f"line {node.start_point[0] + 1}: no assembly {assembly[1]} in .NET Framework 4.8")
    return problems


def test_add_type_compiles_and_loads_only_framework_assemblies(trees):
    """The scripts hand Add-Type no C# today (under WDAC or AppLocker an Add-Type of C# is
    refused, and endpoint protection flags PowerShell that runs the C# compiler): the one
    Add-Type names a .NET Framework 4.8 assembly. Should C# come, the same check compiles it."""
    need(shutil.which("mcs") and shutil.which("x86_64-w64-mingw32-nm"), "mcs (mono-devel) and mingw-w64's nm")
    for (variant, script), tree in trees.items():
        assert add_type_problems(tree) == [], f"{variant} {script}"
        assert addtype.sources(tree) == [], f"{variant} {script}"
    install = trees[("machine-hidden-env", ENGINE)]
    assert [
        n.text.decode()
        for n in pwsh.walk(install.root_node)
        if n.type == "command" and pwsh._command_name(n) == "add-type"
    ] == ["Add-Type -AssemblyName System.IO.Compression"]


def test_the_add_type_check_can_fail(grammar, dotnet):
    need(shutil.which("x86_64-w64-mingw32-nm"), "mingw-w64's nm (apt-get install binutils-mingw-w64-x86-64)")
    good = (
        "Add-Type -Namespace GenBundle -Name Native -MemberDefinition @'\r\n"
        '[DllImport("kernel32.dll", SetLastError = true)]\r\n'
        "public static extern uint WaitForMultipleObjects(uint count, IntPtr[] handles, bool all, uint ms);\r\n"
        "'@\r\n[GenBundle.Native]::WaitForMultipleObjects(1, $h, $false, 0)\r\n"
    )
    (source,) = addtype.sources(parse(grammar, good))
    assert addtype.compile_errors(source) == ""
    assert source.types == ("GenBundle.Native",)
    assert addtype.pinvokes(source.code) == [("kernel32", "WaitForMultipleObjects")]
    assert addtype.exported("kernel32", "WaitForMultipleObjects")
    # A member .NET Framework 4.8 lacks does not compile; an entry point Windows lacks is not exported.
    bad = good.replace("public static extern", "public static Span<byte> Buffer;\r\npublic static extern")
    assert "Span" in addtype.compile_errors(addtype.sources(parse(grammar, bad))[0])
    assert not addtype.exported("kernel32", "WaitForManyObjects")
    assert not addtype.exported("kernel33", "WaitForMultipleObjects")
    typed = addtype.sources(
        parse(
            grammar,
            "Add-Type -TypeDefinition @'\r\nnamespace A { public static class B"
            " { public static int C() { return 1; } } }\r\n'@\r\n",
        )
    )
    assert typed[0].types == ("A.B",) and addtype.compile_errors(typed[0]) == ""
    # The whole check, on a script: what it calls, what it imports, what it loads.
    planted = (
        good.replace("WaitForMultipleObjects(uint", "WaitForManyObjects(uint")
        + "[GenBundle.Other]::Run()\r\nAdd-Type -AssemblyName System.IO.Compressio\r\n"
    )
    assert add_type_problems(parse(grammar, planted)) == [
        "line 1: kernel32.WaitForManyObjects is not in the table of Win32 functions",
        "[GenBundle.Other] is called, but the Add-Type sources declare only ['genbundle.native']",
        "line 7: no assembly System.IO.Compressio in .NET Framework 4.8",
    ]
    assert add_type_problems(parse(grammar, bad))[0].startswith("line 1: does not compile against .NET Framework 4.8")


# ---- 4. WMI/CIM classes and properties ---------------------------------------------------

# Each class the scripts read, its namespace and Microsoft's page; the properties (and
# methods, with their out-parameters as the result's properties) the pages list. A class
# lists those of its subclasses as "derived": Get-ScheduledTask hands back MSFT_TaskExecAction
# for an action, MSFT_TaskPrincipal2 and MSFT_TaskSettings3 (ScheduledTasks' classes, as the
# microsoft/wmi definitions of Windows Server 2019 list them).
TASKSCHED = "https://learn.microsoft.com/windows/win32/taskschd/task-scheduler-objects"
CIM = {
    "Win32_Process": {
        "namespace": "root\\cimv2",
        "doc": "https://learn.microsoft.com/windows/win32/cimwin32prov/win32-process",
        "properties": [
            "Caption",
            "CommandLine",
            "CreationClassName",
            "CreationDate",
            "CSCreationClassName",
            "CSName",
            "Description",
            "ExecutablePath",
            "ExecutionState",
            "Handle",
            "HandleCount",
            "InstallDate",
            "KernelModeTime",
            "MaximumWorkingSetSize",
            "MinimumWorkingSetSize",
            "Name",
            "OSCreationClassName",
            "OSName",
            "OtherOperationCount",
            "OtherTransferCount",
            "PageFaults",
            "PageFileUsage",
            "ParentProcessId",
            "PeakPageFileUsage",
            "PeakVirtualSize",
            "PeakWorkingSetSize",
            "Priority",
            "PrivatePageCount",
            "ProcessId",
            "QuotaNonPagedPoolUsage",
            "QuotaPagedPoolUsage",
            "QuotaPeakNonPagedPoolUsage",
            "QuotaPeakPagedPoolUsage",
            "ReadOperationCount",
            "ReadTransferCount",
            "SessionId",
            "Status",
            "TerminationDate",
            "ThreadCount",
            "UserModeTime",
            "VirtualSize",
            "WindowsVersion",
            "WorkingSetSize",
            "WriteOperationCount",
            "WriteTransferCount",
        ],
        "methods": [
            "AttachDebugger",
            "Create",
            "GetAvailableVirtualSize",
            "GetOwner",
            "GetOwnerSid",
            "SetPriority",
            "Terminate",
        ],
    },
    "Win32_Process.GetOwner": {
        "namespace": "root\\cimv2",
        "doc": "https://learn.microsoft.com/windows/win32/cimwin32prov/getowner-method-in-class-win32-process",
        "properties": ["ReturnValue", "User", "Domain"],
    },
    "Win32_Process.GetOwnerSid": {
        "namespace": "root\\cimv2",
        "doc": "https://learn.microsoft.com/windows/win32/cimwin32prov/getownersid-method-in-class-win32-process",
        "properties": ["ReturnValue", "Sid"],
    },
    "Win32_UserProfile": {
        "namespace": "root\\cimv2",
        "doc": "https://learn.microsoft.com/previous-versions/windows/desktop/legacy/ee886409(v=vs.85)",
        "properties": [
            "SID",
            "LocalPath",
            "Loaded",
            "RefCount",
            "Special",
            "RoamingConfigured",
            "RoamingPath",
            "RoamingPreference",
            "Status",
            "LastUseTime",
            "LastDownloadTime",
            "LastUploadTime",
            "HealthStatus",
        ],
        "methods": ["ChangeOwner"],
    },
    "Win32_TerminalServiceSetting": {
        "namespace": "root\\cimv2\\terminalservices",
        "doc": "https://learn.microsoft.com/windows/win32/termserv/win32-terminalservicesetting",
        "properties": [
            "TerminalServerMode",
            "ServerName",
            "LicensingType",
            "AllowTSConnections",
            "SingleSession",
            "UserPermission",
        ],
    },
    "MSFT_ScheduledTask": {
        "namespace": "root\\microsoft\\windows\\taskscheduler",
        "doc": "https://learn.microsoft.com/powershell/module/scheduledtasks/get-scheduledtask",
        "properties": [
            "Actions",
            "Author",
            "Date",
            "Description",
            "Documentation",
            "Principal",
            "SecurityDescriptor",
            "Settings",
            "Source",
            "State",
            "TaskName",
            "TaskPath",
            "Triggers",
            "URI",
            "Version",
        ],
        "embedded": {
            "actions": "MSFT_TaskAction[]",
            "principal": "MSFT_TaskPrincipal",
            "settings": "MSFT_TaskSettings",
            "triggers": "MSFT_TaskTrigger[]",
        },
    },
    "MSFT_TaskAction": {
        "namespace": "root\\microsoft\\windows\\taskscheduler",
        "doc": TASKSCHED,
        "properties": ["Id"],
        "derived": {"MSFT_TaskExecAction": ["Arguments", "Execute", "WorkingDirectory"]},
    },
    "MSFT_TaskPrincipal": {
        "namespace": "root\\microsoft\\windows\\taskscheduler",
        "doc": TASKSCHED,
        "properties": ["DisplayName", "GroupId", "Id", "LogonType", "RunLevel", "UserId"],
        "derived": {"MSFT_TaskPrincipal2": ["ProcessTokenSidType", "RequiredPrivilege"]},
    },
    "MSFT_TaskSettings": {
        "namespace": "root\\microsoft\\windows\\taskscheduler",
        "doc": TASKSCHED,
        "properties": [
            "AllowDemandStart",
            "AllowHardTerminate",
            "Compatibility",
            "DeleteExpiredTaskAfter",
            "DisallowStartIfOnBatteries",
            "Enabled",
            "ExecutionTimeLimit",
            "Hidden",
            "IdleSettings",
            "MultipleInstances",
            "NetworkSettings",
            "Priority",
            "RestartCount",
            "RestartInterval",
            "RunOnlyIfIdle",
            "RunOnlyIfNetworkAvailable",
            "StartWhenAvailable",
            "StopIfGoingOnBatteries",
            "WakeToRun",
        ],
        "derived": {
            "MSFT_TaskSettings2": ["DisallowStartOnRemoteAppSession", "UseUnifiedSchedulingEngine"],
            "MSFT_TaskSettings3": ["MaintenanceSettings", "Volatile"],
        },
    },
    "MSFT_TaskTrigger": {
        "namespace": "root\\microsoft\\windows\\taskscheduler",
        "doc": TASKSCHED,
        "properties": ["Enabled", "EndBoundary", "ExecutionTimeLimit", "Id", "Repetition", "StartBoundary"],
        "derived": {"MSFT_TaskLogonTrigger": ["Delay", "UserId"]},
    },
    "MSFT_NetTCPConnection": {
        "namespace": "root\\standardcimv2",
        "doc": "https://learn.microsoft.com/windows/win32/fwp/wmi/nettcpipprov/msft-nettcpconnection",
        "properties": [
            "LocalAddress",
            "LocalPort",
            "RemoteAddress",
            "RemotePort",
            "State",
            "AppliedSetting",
            "OwningProcess",
            "CreationTime",
            "OffloadState",
            "InstanceID",
            "Name",
            "ElementName",
        ],
    },
}
for _entry in CIM.values():  # a subclass's properties, where a value of the class may be one
    _entry["properties"] = _entry["properties"] + [p for props in _entry.get("derived", {}).values() for p in props]
# Get-CimInstance whose failure may be silent, and why; any other must stop, or be caught and said.
SILENT_CIM = {
    "Win32_Process": "a process listed a moment ago may have ended (Stop-BundleProcess, Get-PortProblem)",
    "Win32_UserProfile": "a missing profile is reported by name (Write-ServerReport)",
}


def cim_problems(tree, dotnet) -> tuple[list[str], list]:
    checker = pstypes.Checker(tree, dotnet, CIM, LOADED)
    problems = [p for p in checker.run() if "CIM class" in p or " has no " in p or " is in root" in p]
    for call in pscommands.calls(tree):
        silent = re.search(r"-ErrorAction\s+SilentlyContinue", call.node.text.decode())
        if call.name.lower() == "get-ciminstance" and silent:
            cls = re.search(r"-ClassName\s+(\w+)", call.node.text.decode())
            if cls is None or cls[1] not in SILENT_CIM:
                problems.append(
                    f"line {call.line}: {cls[1] if cls else '?'} is read with -ErrorAction "
                    "SilentlyContinue: a check that fails must refuse or say so"
                )
    return problems, [u for u in checker.uses if u.what.startswith("cim")]


def test_every_cim_class_and_property_read_is_in_the_table(trees, dotnet):
    found, used = [], set()
    for (variant, script), tree in trees.items():
        problems, uses = cim_problems(tree, dotnet)
        found += [f"{variant} {script}: {p}" for p in problems]
        used |= {(u.receiver, u.member) for u in uses}
    assert found == []
    # What the scripts read, class by class: each is checked above, and none is missed here.
    assert {r for r, _ in used} == {
        "Win32_Process",
        "Win32_Process.GetOwner",
        "Win32_Process.GetOwnerSid",
        "Win32_UserProfile",
        "MSFT_ScheduledTask",
        "MSFT_TaskAction",
        "MSFT_TaskPrincipal",
        "MSFT_TaskSettings",
        "MSFT_TaskTrigger",
        "MSFT_NetTCPConnection",
    }
    assert ("MSFT_TaskPrincipal", "RunLevel") in used and ("MSFT_TaskAction", "WorkingDirectory") in used


CIM_CONTROLS = {
    "$p = @(Get-CimInstance -ClassName Win32_Processor)": "CIM class Win32_Processor is not in the table",
    "$p = @(Get-CimInstance -ClassName Win32_Process)\r\n$p[0].OwnerName": "Win32_Process has no property OwnerName",
    "$u = Get-CimInstance -ClassName Win32_UserProfile -Filter \"UserSid = 'x'\"": "Win32_UserProfile has no property UserSid",
    "$t = @(Get-CimInstance -ClassName Win32_TerminalServiceSetting)": "is in root\\cimv2\\terminalservices",
    "$t = @(Get-CimInstance -Namespace 'root\\cimv2\\TerminalServices' -ClassName Win32_TerminalServiceSetting"
    " -ErrorAction SilentlyContinue)": "a check that fails must refuse or say so",
    "$t = @(Get-ScheduledTask -TaskPath '\\x\\')\r\n$t[0].Principal.RunLvl": "MSFT_TaskPrincipal has no property RunLvl",
    "$e = Get-CimInstance -ClassName Win32_Process -Filter \"Name = 'x'\"\r\n"
    "$o = Invoke-CimMethod -InputObject $e -MethodName GetOwner\r\n$o.Account": "Win32_Process.GetOwner has no property Account",
    "$e = Get-CimInstance -ClassName Win32_Process\r\n$o = Invoke-CimMethod -InputObject $e -MethodName GetParent": "Win32_Process has no method GetParent",
}


@pytest.mark.parametrize("line", sorted(CIM_CONTROLS))
def test_the_cim_check_can_fail(grammar, dotnet, line):
    problems, _ = cim_problems(parse(grammar, line), dotnet)
    assert any(CIM_CONTROLS[line] in p for p in problems), problems


# ---- the Win32 functions the server's settings and the guard call through ctypes ---------

# Each function: its DLL, its return type (what restype must say when it is not a BOOL or an
# int), whether any parameter is a handle or a pointer (then argtypes must be set: without,
# ctypes passes a Python int as a 32-bit C int), and Microsoft's page.
API = "https://learn.microsoft.com/windows/win32/api/"
WIN32 = {
    ("kernel32", "CloseHandle"): ("BOOL", True, API + "handleapi/nf-handleapi-closehandle"),
    ("kernel32", "CreateToolhelp32Snapshot"): ("HANDLE", False, API + "tlhelp32/nf-tlhelp32-createtoolhelp32snapshot"),
    ("kernel32", "Process32FirstW"): ("BOOL", True, API + "tlhelp32/nf-tlhelp32-process32firstw"),
    ("kernel32", "Process32NextW"): ("BOOL", True, API + "tlhelp32/nf-tlhelp32-process32nextw"),
    ("kernel32", "OpenProcess"): ("HANDLE", False, API + "processthreadsapi/nf-processthreadsapi-openprocess"),
    ("kernel32", "GetCurrentProcess"): (
        "HANDLE",
        False,
        API + "processthreadsapi/nf-processthreadsapi-getcurrentprocess",
    ),
    ("kernel32", "GetProcessTimes"): ("BOOL", True, API + "processthreadsapi/nf-processthreadsapi-getprocesstimes"),
    ("kernel32", "WaitForMultipleObjects"): ("DWORD", True, API + "synchapi/nf-synchapi-waitformultipleobjects"),
    ("iphlpapi", "GetExtendedTcpTable"): ("DWORD", True, API + "iphlpapi/nf-iphlpapi-getextendedtcptable"),
    ("advapi32", "OpenProcessToken"): ("BOOL", True, API + "processthreadsapi/nf-processthreadsapi-openprocesstoken"),
    ("advapi32", "GetTokenInformation"): ("BOOL", True, API + "securitybaseapi/nf-securitybaseapi-gettokeninformation"),
    ("advapi32", "GetLengthSid"): ("DWORD", True, API + "securitybaseapi/nf-securitybaseapi-getlengthsid"),
    ("advapi32", "LookupAccountSidW"): ("BOOL", True, API + "winbase/nf-winbase-lookupaccountsidw"),
    ("user32", "MessageBoxW"): ("int", False, API + "winuser/nf-winuser-messageboxw"),
    # The broker (templates/python/broker.py) and the registration of each server (registration.py).
    ("kernel32", "CreateNamedPipeW"): ("HANDLE", True, API + "namedpipeapi/nf-namedpipeapi-createnamedpipew"),
    ("kernel32", "ConnectNamedPipe"): ("BOOL", True, API + "namedpipeapi/nf-namedpipeapi-connectnamedpipe"),
    ("kernel32", "PeekNamedPipe"): ("BOOL", True, API + "namedpipeapi/nf-namedpipeapi-peeknamedpipe"),
    ("kernel32", "GetNamedPipeClientProcessId"): (
        "BOOL",
        True,
        API + "winbase/nf-winbase-getnamedpipeclientprocessid",
    ),
    ("kernel32", "GetNamedPipeServerProcessId"): (
        "BOOL",
        True,
        API + "winbase/nf-winbase-getnamedpipeserverprocessid",
    ),
    ("kernel32", "GetNamedPipeClientSessionId"): (
        "BOOL",
        True,
        API + "winbase/nf-winbase-getnamedpipeclientsessionid",
    ),
    ("kernel32", "ReadFile"): ("BOOL", True, API + "fileapi/nf-fileapi-readfile"),
    ("kernel32", "WriteFile"): ("BOOL", True, API + "fileapi/nf-fileapi-writefile"),
    ("kernel32", "CreateFileW"): ("HANDLE", True, API + "fileapi/nf-fileapi-createfilew"),
    ("kernel32", "GetFileType"): ("DWORD", True, API + "fileapi/nf-fileapi-getfiletype"),
    ("kernel32", "GetFileInformationByHandle"): ("BOOL", True, API + "fileapi/nf-fileapi-getfileinformationbyhandle"),
    ("kernel32", "GetCurrentThread"): (
        "HANDLE",
        False,
        API + "processthreadsapi/nf-processthreadsapi-getcurrentthread",
    ),
    ("kernel32", "LocalFree"): ("HANDLE", True, API + "winbase/nf-winbase-localfree"),
    ("kernel32", "CreateJobObjectW"): ("HANDLE", True, API + "jobapi2/nf-jobapi2-createjobobjectw"),
    ("kernel32", "SetInformationJobObject"): ("BOOL", True, API + "jobapi2/nf-jobapi2-setinformationjobobject"),
    ("kernel32", "AssignProcessToJobObject"): ("BOOL", True, API + "jobapi2/nf-jobapi2-assignprocesstojobobject"),
    ("advapi32", "ConvertStringSecurityDescriptorToSecurityDescriptorW"): (
        "BOOL",
        True,
        API + "sddl/nf-sddl-convertstringsecuritydescriptortosecuritydescriptorw",
    ),
    ("advapi32", "ConvertSidToStringSidW"): ("BOOL", True, API + "sddl/nf-sddl-convertsidtostringsidw"),
    ("advapi32", "ImpersonateNamedPipeClient"): (
        "BOOL",
        True,
        API + "namedpipeapi/nf-namedpipeapi-impersonatenamedpipeclient",
    ),
    ("advapi32", "OpenThreadToken"): ("BOOL", True, API + "processthreadsapi/nf-processthreadsapi-openthreadtoken"),
    ("advapi32", "RevertToSelf"): ("BOOL", False, API + "securitybaseapi/nf-securitybaseapi-reverttoself"),
    ("advapi32", "GetSecurityInfo"): ("DWORD", True, API + "aclapi/nf-aclapi-getsecurityinfo"),
    ("advapi32", "SetNamedSecurityInfoW"): ("DWORD", True, API + "aclapi/nf-aclapi-setnamedsecurityinfow"),
    ("advapi32", "GetSecurityDescriptorDacl"): (
        "BOOL",
        True,
        API + "securitybaseapi/nf-securitybaseapi-getsecuritydescriptordacl",
    ),
    ("advapi32", "LookupAccountNameW"): ("BOOL", True, API + "winbase/nf-winbase-lookupaccountnamew"),
    ("wtsapi32", "WTSQuerySessionInformationW"): (
        "BOOL",
        True,
        API + "wtsapi32/nf-wtsapi32-wtsquerysessioninformationw",
    ),
    ("wtsapi32", "WTSFreeMemory"): ("void", True, API + "wtsapi32/nf-wtsapi32-wtsfreememory"),
    ("advapi32", "RegisterEventSourceW"): ("HANDLE", True, API + "winbase/nf-winbase-registereventsourcew"),
    ("advapi32", "ReportEventW"): ("BOOL", True, API + "winbase/nf-winbase-reporteventw"),
    ("ntdll", "NtQuerySystemInformation"): ("NTSTATUS", True, API + "winternl/nf-winternl-ntquerysysteminformation"),
}
RESTYPES = {"HANDLE": "wintypes.HANDLE", "DWORD": "wintypes.DWORD"}
# The broker's files declare every function whole: restype always (a BOOL too), argtypes always (empty too).
STRICT_RESTYPES = {**RESTYPES, "BOOL": "wintypes.BOOL", "NTSTATUS": "ctypes.c_long", "int": "ctypes.c_int"}
# The broker, and the registration partial the server's settings paste: held to the strict check.
BROKER_FILES = ("broker.py", "registration.py")  # templates/python, read as they are


def ctypes_problems(source: str, strict: bool = False) -> tuple[list[str], set]:
    """Per WinDLL object (a function's own, or a class's: restype and argtypes belong to the object
    that set them), every function called is in WIN32, declares restype when its return is not an
    int, and argtypes when it takes a handle or a pointer, before the call. ``strict``: every
    function declares both, restype as STRICT_RESTYPES names its return type. A WinDLL object is
    named by a variable or an attribute (``self.kernel32``), by every target it is assigned to."""
    problems, called = [], set()
    tree = ast.parse(source)

    def walk(scope):
        """The scope's nodes, nested functions included (closures share its WinDLL objects, a
        class's methods its attributes); the module's without its functions and classes, which
        are scopes of their own."""
        yield from ast.walk(scope) if scope is not tree else _module_level(tree)

    for scope in [tree, *(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)))]:
        dlls = {}
        for node in walk(scope):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and ast.unparse(node.value.func) == "ctypes.WinDLL"
            ):
                for target in node.targets:
                    if isinstance(target, (ast.Name, ast.Attribute)):
                        dlls[ast.unparse(target)] = node.value.args[0].value.lower()
        declared: dict[tuple, dict[str, str]] = {}
        for node in walk(scope):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
                target = node.targets[0]
                if (
                    target.attr in ("restype", "argtypes")
                    and isinstance(target.value, ast.Attribute)
                    and ast.unparse(target.value.value) in dlls
                ):
                    key = (dlls[ast.unparse(target.value.value)], target.value.attr)
                    declared.setdefault(key, {})[target.attr] = ast.unparse(node.value)
        for node in walk(scope):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if isinstance(owner, (ast.Name, ast.Attribute)) and ast.unparse(owner) in dlls:
                key = (dlls[ast.unparse(owner)], node.func.attr)
            elif isinstance(owner, ast.Call) and ast.unparse(owner.func) == "ctypes.WinDLL":
                key = (owner.args[0].value.lower(), node.func.attr)
            else:
                continue
            called.add(key)
            facts = WIN32.get(key)
            where = f"line {node.lineno}: {key[0]}.{key[1]}"
            if facts is None:
                problems.append(f"{where} is not in the table of Win32 functions")
                continue
            returns, pointers, _ = facts
            have = declared.get(key, {})
            wanted = STRICT_RESTYPES if strict else RESTYPES
            if returns in wanted and have.get("restype") != wanted[returns]:
                problems.append(f"{where} returns {returns}: restype must be {wanted[returns]}")
            if (pointers or strict) and "argtypes" not in have:
                problems.append(
                    f"{where} takes a handle or a pointer: argtypes must be set"
                    if pointers
                    else f"{where}: argtypes must be set"
                )
    return sorted(problems, key=lambda p: int(p.split(":")[0].split()[1])), called


def _module_level(tree):
    """The module's nodes outside its functions and classes."""
    todo = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    while todo:
        node = todo.pop()
        yield node
        todo += [c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.FunctionDef)]


def test_every_win32_function_called_through_ctypes_is_declared(canonical_files):
    need(shutil.which("x86_64-w64-mingw32-nm"), "mingw-w64's nm (apt-get install binutils-mingw-w64-x86-64)")
    called = set()
    for name in ("start-py.launcher.py", "start-py.config.py", "start-py.guard.py", "py.broker.py"):
        problems, used = ctypes_problems(canonical_files[name].decode("utf-8"))
        assert problems == [], name
        called |= used
    assert (REPO / "templates" / "python" / "broker.py").read_bytes().replace(b"\n", b"\r\n") in canonical_files[
        "py.broker.py"
    ]  # the bundle's broker is the file checked strictly below
    for name in BROKER_FILES:
        problems, used = ctypes_problems(
            (REPO / "templates" / "python" / name).read_text(encoding="utf-8"), strict=True
        )
        assert problems == [], name
        called |= used
    assert called == set(WIN32)  # the table holds what is called, and no more
    for dll, function in WIN32:
        assert addtype.exported(dll, function), f"{dll}.dll exports no {function}"


def test_the_ctypes_check_can_fail():
    old = (REPO / "templates" / "python" / "watch.py").read_text(encoding="utf-8")
    restype = "        kernel32.WaitForMultipleObjects.restype = wintypes.DWORD  # WAIT_FAILED is 0xFFFFFFFF, not -1\n"
    old = old.replace(restype, "")
    old = old.replace("    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]\n    snapshot", "    snapshot")
    old += "\nctypes.WinDLL('kernel32').Beep(750, 300)\n"
    problems, _ = ctypes_problems(old)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "kernel32.CloseHandle takes a handle or a pointer: argtypes must be set",
        "kernel32.WaitForMultipleObjects returns DWORD: restype must be wintypes.DWORD",
        "kernel32.Beep is not in the table of Win32 functions",
    ]


def test_the_strict_ctypes_check_reads_the_broker_classes_and_can_fail():
    """The broker declares its functions in WindowsPlatform.__init__ on attributes (self.kernel32) and
    calls them from the class's other methods: the check follows them there, and in strict mode wants
    a BOOL's restype and an empty argtypes too."""
    old = (REPO / "templates" / "python" / "broker.py").read_text(encoding="utf-8")
    for line in (
        "        kernel32.PeekNamedPipe.restype = wintypes.BOOL\n",
        "        kernel32.GetCurrentThread.argtypes = []\n",
        "        iphlpapi.GetExtendedTcpTable.restype = wintypes.DWORD\n",
        "        advapi32.GetSecurityInfo.argtypes = [wintypes.HANDLE, ctypes.c_int, wintypes.DWORD] + [pointer] * 5\n",
    ):
        assert line in old
        old = old.replace(line, "")
    problems, called = ctypes_problems(old, strict=True)
    assert sorted(p.split(": ", 1)[1] for p in problems) == [
        "advapi32.GetSecurityInfo takes a handle or a pointer: argtypes must be set",
        "iphlpapi.GetExtendedTcpTable returns DWORD: restype must be wintypes.DWORD",
        "kernel32.GetCurrentThread: argtypes must be set",
        "kernel32.PeekNamedPipe returns BOOL: restype must be wintypes.BOOL",
    ]
    assert ("ntdll", "NtQuerySystemInformation") in called  # called from a method, declared in __init__
    assert ctypes_problems(old)[0] == [
        p for p in problems if "GetSecurityInfo" in p or "GetExtendedTcpTable" in p
    ]  # without strict, only what the other files are held to


def test_the_watchdogs_watch_every_process_between_them_and_the_task(trees):
    """The launcher's WATCH_DEPTH is the number of processes between its python.exe and the task's
    own process, counted from the task's action: conhost.exe (hidden) and cmd.exe; with --env,
    Scripts\\python.exe is the base install's venv launcher, which runs the base python.exe as its
    child (docs.python.org, venv: "How venvs work"). The server's adds the launcher's python.exe
    and, with --env, the server's own venv launcher."""
    from conftest import python_constants

    for shape, inputs in SHAPES.items():
        for env in (False, True):
            spec = build_spec(**CANONICAL, **inputs, env=env)
            chain = (
                ["conhost.exe", "cmd.exe"] if Layout(spec).task_command.lower().endswith("conhost.exe") else ["cmd.exe"]
            )  # minimized: `start` leaves only the inner cmd.exe above the launcher
            if env:
                chain.append("venv launcher of the launcher")
            assert Layout(spec).launcher_watch_depth == len(chain), (shape, env)
            chain.append("the launcher's python.exe")
            if env:
                chain.append("venv launcher of the server")
            assert Layout(spec).watch_depth == len(chain), (shape, env)
    files = render(build_spec(**CANONICAL))
    assert python_constants(files["start-py.launcher.py"])["WATCH_DEPTH"] == 2
    assert python_constants(files["start-py.config.py"])["WATCH_DEPTH"] == 3


def test_the_pester_suites_pass_the_tokenizer_rules():
    """The Windows workflow's own PowerShell is held to the same rules: a suite PowerShell could
    not load would fail there, not here."""
    import yaml

    sources = {path.name: path.read_bytes() for path in sorted((REPO / "tests" / "pester").glob("*.Tests.ps1"))}
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "windows.yml").read_text(encoding="utf-8"))
    for i, step in enumerate(workflow["jobs"]["pester"]["steps"]):
        if "run" in step:
            sources[f"windows.yml step {i}"] = step["run"].encode()
    assert len(sources) >= 6
    assert {name: [str(f) for f in pstoken.findings(source)] for name, source in sources.items()} == {
        name: [] for name in sources
    }


def values_problems(script_tree, engine_tree) -> list[str]:
    """The variables that the engine functions ``script_tree`` runs (directly or through each
    other) read, and that neither the engine sets, nor this script's values block gives, nor the
    script hands over: Set-StrictMode stops at each (VariableIsUndefined) when that script runs it."""
    from test_powershell import free_variables, functions, reachable, script_assignments

    library = functions(engine_tree.root_node, top_level=True)
    given = {key.lower() for key in pwsh.assignments(script_tree)} | set(script_assignments(engine_tree)) | HANDED
    called = {pwsh._command_name(node) for node in pwsh.walk(script_tree.root_node)} & set(library)
    return [
        f"{function} reads ${variable}"
        for function in sorted(reachable(library, called, set()))
        for variable in sorted(free_variables(library[function]) - given)
    ]


def test_each_script_gives_every_value_the_engine_functions_it_runs_read(trees, variants):
    """values_of (above) pools every script's values; here each script is held to its own."""
    found = [
        f"{variant} {script}: {problem}"
        for (variant, script), tree in trees.items()
        if script != ENGINE
        for problem in values_problems(tree, trees[variant, ENGINE])
    ]
    assert found == []


def test_the_values_check_follows_each_script(grammar, variants):
    """The control: uninstall.ps1 gives no EnvFolder to a function it runs that reads one."""
    files = variants["machine-hidden"]
    engine = pwsh.script_text(source(files, ENGINE)).decode("utf-8")
    planted = engine.replace(
        "function Remove-BundleFiles {", "function Remove-BundleFiles {\r\n    $probe = $EnvFolder", 1
    )
    assert planted != engine
    uninstall = grammar.parse(pwsh.script_text(files["uninstall.ps1"]))
    assert values_problems(uninstall, grammar.parse(planted.encode("utf-8"))) == ["remove-bundlefiles reads $envfolder"]
