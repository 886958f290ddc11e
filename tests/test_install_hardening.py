"""install.ps1 and uninstall.ps1 after the IT security review, on their parse trees.

Each check runs on the rendered scripts (it must pass) and on a few lines in the
shape of the script before the fix (it must fail), so that a check that cannot
fail shows up here. What needs Windows to be seen is in tests/pester/.
"""

from __future__ import annotations

import re

import pytest

from conftest import render_bundle
from support.pwsh import _changes_state, _command_name, _enclosing_function, script_text, walk

SCRIPTS = ("install.ps1", "uninstall.ps1")


def tree(grammar, source: bytes | str):
    return grammar.parse(source.encode() if isinstance(source, str) else script_text(source))


def script(grammar, name: str, **inputs):
    """The script as it runs: its steps with the engine's step functions in place, then the engine."""
    from support.program import inlined

    return tree(grammar, inlined(render_bundle(**inputs), name, grammar))


def commands(root) -> list:
    """(name, node) of every command and .NET method call, in the order of the text."""
    found = []
    for node in walk(root.root_node):
        name = _command_name(node)
        if name is not None:
            found.append((name, node))
        elif node.type == "invocation_expression":
            member = next((c for c in node.children if c.type == "member_name"), None)
            if member is not None:
                found.append((member.text.decode().lower(), node))
    return found


def function(root, name: str):
    return next(
        node
        for node in walk(root.root_node)
        if node.type == "function_statement"
        and next(c for c in node.children if c.type == "function_name").text.decode() == name
    )


def main_body(root) -> list:
    """The commands of the script's own steps: outside every function."""
    return [(name, node) for name, node in commands(root) if _enclosing_function(node) is None]


# ---- 1 and 2: nothing written before the preflight ends; SYSTEM writes through no user's folder ----

WRITES_BEFORE = {
    "start-transcript",
    "set-acl",
    "new-adminonlyfolder",
    "createdirectory",
    "writeallbytes",
    "writealltext",
    "copy-item",
}


def commands_in(node) -> list:
    """(name, node) of every command and .NET method call below ``node``, in the order of the text."""
    return commands(type("Tree", (), {"root_node": node})())


def lock_root_creation(node) -> bool:
    """Lock-GenBundle creating $InstallRoot and $StateRoot when missing, and the lock file in
    it, for the machine's run lock: the one change before the preflight, which the bundle's
    README names."""
    if _enclosing_function(node) != "lock-genbundle":
        return False
    return _command_name(node) == "new-adminonlyfolder" or node.text.decode().startswith("[IO.File]::Open($path,")


def policy_off_branch(node) -> bool:
    """Inside ``if (Test-BundleOff) { ... }``: an administrator's policy value turned the bundle
    off, and its tasks are disabled and its processes stopped before any check (the README says so)."""
    child, parent = node, node.parent
    while parent is not None:  # its own block only, not an else
        if (
            parent.type == "if_statement"
            and parent.children[2].text.decode().strip() == "Test-BundleOff"
            and child == next(c for c in parent.children if c.type == "statement_block")
        ):
            return True
        child, parent = parent, parent.parent
    return False


def writes_in(node, functions: dict, seen: set[str]) -> list:
    """The writes below ``node``, and below every function of the script it calls (once each):
    a write inside a step's helper is a write of the step."""
    found = []
    for name, inner in commands_in(node):
        if lock_root_creation(inner) or policy_off_branch(inner):
            continue
        if name in functions:
            if name not in seen:
                seen.add(name)
                found += writes_in(functions[name], functions, seen)
        elif (name in WRITES_BEFORE or _changes_state(inner)) and not own_engine_copy(inner):
            found.append((name, inner))
    return found


def writes_before_preflight_ends(root) -> list[str]:
    from support.program import engine_functions

    body = main_body(root)
    ends = [node.start_byte for name, node in body if name == "stop-bundle" and "$ExitPreflight" in node.text.decode()]
    assert ends, "no preflight refusal in the script"
    functions, seen = engine_functions(root), set()
    found = []
    for name, node in body:
        if node.start_byte >= ends[-1]:
            break
        if policy_off_branch(node):
            continue
        if name in functions:
            if name not in seen:
                seen.add(name)
                found += [f"{name}: {inner_name}" for inner_name, _ in writes_in(functions[name], functions, seen)]
        elif (name in WRITES_BEFORE or _changes_state(node)) and not own_engine_copy(node):
            found.append(f"{name} at line {node.start_point[0] + 1}")
    return found


def own_engine_copy(node) -> bool:
    """The engine's copy for this run, only where the engine loaded from memory does not run in
    full language (engine_load_problems): written, before anything else, to a folder the script
    has just made with its own ACL (only SYSTEM, administrators and the account that runs it), and
    deleted at the end; no change to the machine."""
    return "$engineFolder" in node.text.decode()


IN_MEMORY = "New-Module -Name ([IO.Path]::GetFileNameWithoutExtension($Bundle.EngineFile)) -ScriptBlock ([ScriptBlock]::Create([Text.Encoding]::UTF8.GetString($engineBytes, 3, $unsignedLength - 3)))"
FALLBACK = "if ($engineMode -ne 'FullLanguage') {"


def engine_load_problems(root) -> list[str]:
    """install.ps1 and uninstall.ps1 load the engine from the bytes they checked, in memory (less
    the BOM, less a signature block), and write a file only on the path where that engine does not
    run in full language: no file under the temporary folder, which SYSTEM importing a module from
    is a hunting rule's pattern, and none under -WhatIf."""
    problems = []
    body = [(name, node) for name, node in main_body(root)]
    loads = [node for name, node in body if name == "new-module"]
    if not loads or IN_MEMORY not in loads[0].text.decode():
        return ["the engine is not loaded from its checked bytes in memory"]
    fallbacks = [n for n in walk(root.root_node) if n.type == "if_statement" and n.text.decode().startswith(FALLBACK)]
    if not fallbacks or fallbacks[0].start_byte < loads[0].end_byte:
        problems.append("no file import for an engine that does not run in full language, after the load")
    start = next(node.start_byte for name, node in body if name == "initialize-genbundle")
    for name, node in body:
        if node.start_byte >= start:
            break
        if (name in WRITES_BEFORE or _changes_state(node) or name == "import-module") and not any(
            f.start_byte <= node.start_byte < f.end_byte for f in fallbacks
        ):
            problems.append(f"{name} at line {node.start_point[0] + 1} runs whatever the engine's language")
    return problems


@pytest.mark.parametrize("name", ["install.ps1", "uninstall.ps1"])
def test_the_engine_is_loaded_from_its_checked_bytes_in_memory(grammar, name):
    assert engine_load_problems(script(grammar, name)) == []
    files = render_bundle()
    engine = next(file for file in files if file.endswith(".psm1"))
    assert files[engine].startswith(b"\xef\xbb\xbf")  # the three bytes the load skips


def test_the_engine_load_check_can_fail(grammar):
    text = script(grammar, "install.ps1").root_node.text.decode()
    moved = text.replace(FALLBACK, "if ($true) {", 1)
    moved = moved.replace(
        "    Import-Module -Name (Join-Path $engineFolder $Bundle.EngineFile) -DisableNameChecking\r\n}\r\n",
        "}\r\nImport-Module -Name (Join-Path $engineFolder $Bundle.EngineFile) -DisableNameChecking\r\n",
        1,
    )
    assert [p.split(" at ")[0] for p in engine_load_problems(tree(grammar, moved))] == [
        "no file import for an engine that does not run in full language, after the load",
        "createdirectory",
        "createdirectory",
        "writeallbytes",
        "import-module",
    ]
    assert engine_load_problems(tree(grammar, text.replace("$engineBytes, 3,", "$engineBytes, 0,", 1))) == [
        "the engine is not loaded from its checked bytes in memory"
    ]


def test_install_writes_nothing_before_its_preflight_ends(grammar):
    for inputs in ({}, {"scope": "user", "user": "CONTOSO\\alice"}):
        assert writes_before_preflight_ends(script(grammar, "install.ps1", **inputs)) == []


def test_the_preflight_order_check_can_fail(grammar):
    old = """
function Start-RunLog {
    New-StateFolder
    Start-Transcript -LiteralPath $log
}
try {
    if (-not $WhatIfPreference -and $PSCmdlet.ShouldProcess($logDir, 'Write the log of this run')) {
        Start-RunLog
        Set-Acl -LiteralPath $logDir -AclObject $acl
    }
    if ($problems.Count -gt 0) {
        Stop-Bundle $ExitPreflight 'a check before any change failed (above). Nothing was changed.'
    }
} catch {}
"""
    assert writes_before_preflight_ends(tree(grammar, old)) == [
        "start-runlog: start-transcript",
        "set-acl at line 9",
    ]


def unsafe_folder_writes(root) -> list[str]:
    """Folders made, or ACLs set, other than through the admin-only helper (or under
    %ProgramFiles%, where users cannot create folders: $InstallDir, and Install-Environment,
    which makes folders only below its staging folder in $InstallDir)."""
    problems = []
    for name, node in commands(root):
        text = node.text.decode()
        if name == "set-acl" or name == "protect-statedirectory":
            problems.append(f"{name} at line {node.start_point[0] + 1}")
        elif (
            name == "createdirectory"
            and "$InstallDir" not in text
            and not own_engine_copy(node)
            and _enclosing_function(node) not in ("new-adminonlyfolder", "install-environment")
        ):
            problems.append(f"CreateDirectory at line {node.start_point[0] + 1}: {text[:60]}")
    return problems


@pytest.mark.parametrize("name", SCRIPTS)
def test_folders_under_programdata_are_made_admin_only_from_the_start(grammar, name):
    root = script(grammar, name)
    assert unsafe_folder_writes(root) == []
    # The state folders, every level, are made by the helper and checked after it.
    text = function(root, "New-StateFolder").text.decode()
    assert text.index("New-AdminOnlyFolder") < text.index("Get-AdminOnlyProblem") < text.index("throw")


def level_problems(root) -> list[str]:
    """CreateDirectory(path, DirectorySecurity) creates every missing parent with that same ACL
    (Microsoft's page for Directory.CreateDirectory(String, DirectorySecurity)). So New-StateFolder
    must make one level at a time, from a folder every Windows has (%ProgramFiles%), each with
    its own ACL: the install folder's parent lets users read (the launcher is below it), the
    state folders do not; and New-AdminOnlyFolder must refuse a missing parent."""
    from support.pwsh import assignments

    values = assignments(root)
    loop = next(n for n in walk(function(root, "New-StateFolder")) if n.type == "foreach_statement")
    collection = next(c for c in loop.children if c.type == "pipeline").text.decode()
    levels = re.findall(r"@\(\$(\w+), \$(true|false)\)", collection) or [
        (name, "false") for name in re.findall(r"\$(\w+)", collection)
    ]
    problems, parent = [], ("ProgramFiles", "")
    for name, users_read in levels:
        path = values[name]
        if (path[0], path[1].rpartition("\\")[0]) != parent:
            problems.append(f"${name} ({path[1]}) is made before its parent")
        wanted = name == "InstallRoot"
        if (users_read == "true") != wanted:
            problems.append(f"${name} gets {'users read' if users_read == 'true' else 'administrators only'}")
        parent = path
    install_dir = values["InstallDir"]
    if ("InstallRoot", "true") not in levels or values["InstallRoot"][1] != install_dir[1].rpartition("\\")[0]:
        problems.append("the install folder's parent is not made with users read")
    helper = function(root, "New-AdminOnlyFolder")
    create = min(n.start_byte for n in walk(helper) if n.type == "member_name" and n.text == b"CreateDirectory")
    guards = [
        n
        for n in walk(helper)
        if n.type == "if_statement"
        and n.start_byte < create
        and "Test-Path" in n.children[2].text.decode()
        and "Split-Path -Parent $Path" in n.children[2].text.decode()
        and any(t.type == "flow_control_statement" and t.text.startswith(b"throw") for t in walk(n))
    ]
    if not guards:
        problems.append("New-AdminOnlyFolder does not refuse a missing parent")
    return problems


def test_each_folder_level_gets_its_own_acl(grammar):
    for inputs in ({}, {"scope": "user", "user": "CONTOSO\\alice"}):
        assert level_problems(script(grammar, "install.ps1", **inputs)) == []


def test_the_level_check_can_fail(grammar):
    current = script(grammar, "install.ps1").root_node.text.decode()
    start = current.index("function New-StateFolder {")
    end = current.index("\n}", start) + 2
    old = (
        current[:start]
        + """function New-StateFolder {
    foreach ($folder in @($StateRoot, $StateDir, $StateLogDir)) {
        if (-not (Test-Entry $folder)) {
            New-AdminOnlyFolder -Path $folder
        }
    }
}"""
        + current[end:]
    )
    guard = "if (-not (Test-Path -LiteralPath (Split-Path -Parent $Path) -PathType Container)) {"
    old = old.replace(guard, "if ($false) {")
    assert level_problems(tree(grammar, old)) == [
        "$StateRoot (gen-bundle\\state) is made before its parent",
        "the install folder's parent is not made with users read",
        "New-AdminOnlyFolder does not refuse a missing parent",
    ]


def test_the_folder_check_can_fail(grammar):
    old = """
function Protect-StateDirectory {
    foreach ($folder in @((Split-Path -Parent $StateDir), $StateDir)) {
        [void][IO.Directory]::CreateDirectory($folder)
        Set-Acl -LiteralPath $folder -AclObject (New-AdminOnlySecurity)
    }
}
"""
    assert unsafe_folder_writes(tree(grammar, old)) == [
        "CreateDirectory at line 4: [IO.Directory]::CreateDirectory($folder)",
        "set-acl at line 5",
    ]


# ---- 3: check, then use the same bytes ----


def second_reads(root) -> list[str]:
    """Bundle files read outside the one function that reads and checks them: the engine reads the
    bundle's folder ($Root) only there, and the script ($PSScriptRoot) only to read the engine's
    bytes, which it checks against the SHA-256 it holds, and to hand the folder to the engine."""
    found = []
    for node in walk(root.root_node):
        name = node.text.decode().lower() if node.type == "variable" else ""
        if name == "$bundleroot" and _enclosing_function(node) != "read-verifiedbundle":
            found.append(f"line {node.start_point[0] + 1}")
        elif name == "$psscriptroot":
            line = root.root_node.text.decode().split("\n")[node.start_point[0]]
            if not line.startswith(
                (
                    "$enginePath = Join-Path $PSScriptRoot $Bundle.EngineFile",
                    "Initialize-GenBundle -Caller $PSCmdlet -Values ($Bundle + @{ BundleRoot = ",
                )
            ):
                found.append(f"line {node.start_point[0] + 1}")
    return found


def test_install_uses_only_the_bytes_it_checked(grammar):
    root = script(grammar, "install.ps1")
    assert second_reads(root) == []
    text = root.root_node.text.decode()
    assert text.count("$PSScriptRoot") == 2 and text.count("Join-Path $BundleRoot ") == 2  # SHA256SUMS, each file


def test_the_second_read_check_can_fail(grammar):
    old = """
function Read-VerifiedBundle { [IO.File]::ReadAllBytes((Join-Path $BundleRoot 'SHA256SUMS')) }
$taskXml = Get-Content -LiteralPath (Join-Path $PSScriptRoot $TaskFile) -Raw
Copy-Item -LiteralPath (Join-Path $PSScriptRoot $file) -Destination $target -Force
function Install-It { Copy-Item -LiteralPath (Join-Path $BundleRoot $file) -Destination $target }
"""
    assert second_reads(tree(grammar, old)) == ["line 3", "line 4", "line 5"]


def test_the_pinned_sums_parameter_is_declared_and_checked_first(grammar):
    root = script(grammar, "install.ps1")
    params = [n.text.decode() for n in walk(root.root_node) if n.type == "script_parameter"]
    assert "[string]$SumsSha256" in params
    names = [name for name, _ in main_body(root)]
    read = names.index("read-verifiedbundle")
    assert read < names.index("confirm-elevated") < names.index("get-portproblem")
    node = main_body(root)[read][1]
    assert "-PinnedSums $PinnedSums" in node.text.decode()  # the step's parameter, which the script gives:
    assert "Read-InstallBundle -PinnedSums $SumsSha256" in render_bundle()["install.ps1"].decode("utf-8-sig")


# ---- 4: a disabled task stays disabled; backups are capped ----


def disabled_task_exit(root) -> str | None:
    """The branch that leaves a disabled task alone: its exit code, when it comes before any change."""
    first_change = min(
        node.start_byte
        for name, node in main_body(root)
        if "ShouldProcess" in node.text.decode() or name in ("shouldprocess", "confirm-change")
    )
    for node in walk(root.root_node):
        if node.type == "if_statement" and node.start_byte < first_change:
            condition = node.children[2].text.decode() if len(node.children) > 2 else ""
            # -Force enables it: written out, or through $adminMayKeep (-not $Force, and every security
            # check passed: a disabled task does not let the other run on from an unsafe tree).
            forced = "-not $Force" in condition or (
                "$adminMayKeep" in condition and "$adminMayKeep = -not $Force -and " in root.root_node.text.decode()
            )
            if ("'Disabled'" in condition or "Test-TaskDisabledByAdmin" in condition) and forced:
                exits = [n.text.decode() for n in walk(node) if n.type == "flow_control_statement"]
                exits += [
                    "exit " + n.text.decode().split()[1]
                    for n in walk(node)
                    if n.type == "command" and _command_name(n) == "stop-bundle"
                ]  # the engine's exit
                return exits[0] if exits else None
    return None


def test_a_disabled_task_is_left_disabled_and_install_exits_0(grammar):
    assert disabled_task_exit(script(grammar, "install.ps1")) == "exit 0"


def test_the_disabled_task_check_can_fail(grammar):
    old = """
$same = ($task.Author -eq 'gen-bundle') -and ($task.State -ne 'Disabled')
if ($PSCmdlet.ShouldProcess("$TaskFolder$TaskName", 'Register')) { Register-ScheduledTask -Xml $x }
"""
    assert disabled_task_exit(tree(grammar, old)) is None


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_hosts_backup_write_prunes_the_old_ones(grammar, name):
    root = script(grammar, name)
    write = function(root, "Write-HostsFile")
    calls = [name for name, node in commands(root) if write.start_byte <= node.start_byte < write.end_byte]
    assert calls.index("replace") < calls.index("remove-oldhostsbackup")
    assert "$KeepHostsBackups" in root.root_node.text.decode()


# ---- 5: exit codes ----


def first_statement_exit(root) -> str | None:
    """The exit of a trap that is the first statement after param(): it covers the whole script."""
    param = next(n for n in walk(root.root_node) if n.type == "param_block")
    statements = next(
        (n for n in root.root_node.children if n.start_byte > param.end_byte and n.type == "statement_list"), None
    )
    first = next((n for n in statements.children if n.type != "comment"), None) if statements is not None else None
    if first is None or first.type != "trap_statement":
        return None
    exits = [n.text.decode() for n in walk(first) if n.type == "flow_control_statement"]
    return exits[-1] if exits else None


@pytest.mark.parametrize(
    ("name", "code"), [("install.ps1", "exit 1603"), ("uninstall.ps1", "exit 1603"), ("detect.ps1", "exit 0")]
)
def test_a_trap_gives_the_documented_code_for_any_failure(grammar, name, code):
    root = script(grammar, name)
    assert first_statement_exit(root) == code
    exits = {
        n.text.decode()
        for n in walk(root.root_node)
        if n.type == "flow_control_statement"
        if n.text.decode().startswith("exit ")
    }
    assert "exit 1" not in exits
    assert "exit $LASTEXITCODE" in exits  # the 64-bit relaunch passes the child's code through


def test_the_trap_check_can_fail(grammar):
    assert first_statement_exit(tree(grammar, "param()\n$x = 1\ntrap { exit 1603 }\n")) is None
    assert first_statement_exit(tree(grammar, "param()\ntrap { exit 1 }\n")) == "exit 1"


# ---- 8: smaller ----


def test_processes_are_stopped_only_while_they_are_the_ones_listed(grammar):
    root = script(grammar, "install.ps1")
    text = function(root, "Stop-BundleProcess").text.decode()
    recheck = text.index("$now.CreationDate -ne $process.CreationDate")
    assert recheck < text.index("continue") < text.index("Stop-Process")


def test_whatif_sends_no_request(grammar):
    root = script(grammar, "install.ps1")
    body = main_body(root)
    probes = [node.start_byte for name, node in body if name in ("test-brokeranswer", "test-serverregistered")]
    guard = [
        node
        for node in walk(root.root_node)
        if node.type == "if_statement"
        and node.children[2].text.decode().strip() == "$WhatIfPreference"
        and any(n.text.decode() in ("exit 0", "return") for n in walk(node))
    ]
    assert probes and guard and guard[0].end_byte < min(probes)


def test_the_port_preflight_sees_ipv6_listeners_and_hosts_follows_databasepath(grammar):
    text = script(grammar, "install.ps1").root_node.text.decode()
    assert """@($BundleIp, '0.0.0.0', '::', "::ffff:$BundleIp")""" in text
    assert "'DataBasePath'" in text and "$HostsPath = Join-Path $HostsFolder 'hosts'" in text


CULTURE_OPERATORS = ("-ceq", "-cne", "-ieq", "-ine", "-ccontains", "-cnotcontains", "-icontains", "-inotcontains")


def culture_comparisons(root) -> list[str]:
    """String comparisons that follow the culture's rules, where paths and markers need ordinal ones:
    the case-explicit operators, and StartsWith/EndsWith/IndexOf of a string without a StringComparison."""
    found = []
    for node in walk(root.root_node):
        text = node.text.decode()
        if text.lower() in CULTURE_OPERATORS and (node.type == "comparison_operator" or node.child_count == 0):
            found.append(f"line {node.start_point[0] + 1}: {text}")
        elif node.type == "invocation_expression":
            member = next((c for c in node.children if c.type == "member_name"), None)
            if member is not None and member.text.decode() in ("StartsWith", "EndsWith", "IndexOf"):
                if "StringComparison" not in text and not text.startswith("[array]::"):
                    found.append(f"line {node.start_point[0] + 1}: {text[:60]}")
    return sorted(set(found))


@pytest.mark.parametrize("name", (*SCRIPTS, "detect.ps1"))
def test_paths_and_markers_are_compared_ordinally(grammar, name):
    assert culture_comparisons(script(grammar, name)) == []


def test_the_ordinal_check_can_fail(grammar):
    old = """
if ($bare -ceq $HostsBegin) { 1 }
if ($Text.StartsWith($Utf8Bom)) { 2 }
if ($shortcut.TargetPath -ieq $shortcutTarget) { 3 }
"""
    found = culture_comparisons(tree(grammar, old))
    assert [line.split(":")[0] for line in found] == ["line 2", "line 3", "line 4"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_whatif_shows_the_hosts_change_byte_for_byte(grammar, name):
    root = script(grammar, name)
    names = {name for name, _ in commands(root)}
    assert "get-bytediff" in names and "get-linediff" not in names
    message = next(
        node.text.decode()
        for name, node in commands(root)
        if name == "confirm-change" and "-Target $HostsPath" in node.text.decode()
    )
    assert "-Action (Get-HostsChange -Before $Run.HostsBefore -After $after)" in message
    change = function(root, "Get-HostsChange").text.decode()
    assert change.index("if ($WhatIfPreference)") < change.index("Get-ByteDiff -Before $Before -After $After")


def test_the_whole_python_tree_is_checked_at_every_run(grammar):
    root = script(grammar, "install.ps1")
    text = function(root, "Get-PythonTreeProblem").text.decode()
    for part in (
        "@('Lib', 'DLLs', 'Scripts', 'share', 'etc')",
        "'pyvenv.cfg'",
        "[IO.Directory]::GetDirectories($tree)",
        "$trees.Add($child)",
        "'*.pth'",
        "'*._pth'",
        "Get-NonAdminWriter -Path $path",
    ):
        assert part in text
    # At every run: the preflight's safety checks call it (and detect.ps1's: test_script_faults.py).
    assert "get-safetyproblem" in [name for name, _ in main_body(root)]
    assert "Get-PythonTreeProblem" in function(root, "Get-SafetyProblem").text.decode()


# ---- the bundle's own environment (--env): extracted, never run; swapped whole ----


class _Part:
    """One function of a script, in the shape commands() reads."""

    def __init__(self, node):
        self.root_node = node


def env_problems(root) -> list[str]:
    """What would let a server see a half-written environment, or delete one in use."""
    problems = []
    install = [(name, node.text.decode()) for name, node in commands(_Part(function(root, "Install-Environment")))]
    names = [name for name, _ in install]
    marker = next(
        (i for i, (name, text) in enumerate(install) if name == "writealltext" and "$EnvMarkerFile" in text), None
    )
    after = [name for name, _ in install[marker + 1 :]] if marker is not None else []
    # After the marker: the one rename into place (retried, with a pause, while an antivirus holds a file).
    if (
        marker is None
        or names.count("move") != 1
        or after.count("move") != 1
        or set(after) - {"move", "start-sleep", "join-path"}
    ):
        problems.append("Install-Environment: the marker, then one rename into place, must come last")
    if "createnew" not in " ".join(text.lower() for _, text in install) or names.index("getfullpath") > names.index(
        "copyto"
    ):
        problems.append("Install-Environment: each entry's path is checked before it is written, and never overwrites")
    remove = [name for name, _ in commands(_Part(function(root, "Remove-EnvironmentFolder")))]
    last_delete = len(remove) - 1 - remove[::-1].index("remove-item") if "remove-item" in remove else -1
    if "move" not in remove or remove.index("move") > last_delete:
        problems.append("Remove-EnvironmentFolder: rename first, delete only what could be renamed")
    steps = [name if "$bundle[$file]" not in node.text.decode() else "write-launcher" for name, node in main_body(root)]
    if not steps.index("install-environment") < steps.index("write-launcher") < steps.index("remove-environmentfolder"):
        problems.append("install: new environment, then the launcher that points at it, then the old one removed")
    return problems


def python_runs(root) -> list[str]:
    """Commands that would run a Python (as the administrator who runs install.ps1)."""
    found = []
    for name, node in commands(root):
        text = node.text.decode().lower()
        if (
            ("python" in name and name.endswith((".exe", "python", "pythonexe")))
            or name in ("start-process", "&")
            or text.startswith(("& $pythonexe", "& $envpython", "&$pythonexe"))
        ):
            found.append(f"line {node.start_point[0] + 1}: {text[:60]}")
    return found


def env_install(grammar, windows_env) -> str:
    """An --env bundle's install.ps1 with its steps in place, as text."""
    from generator.render import render
    from generator.spec import build_spec

    from support.program import inlined

    return inlined(
        render(build_spec(ip="127.0.0.13", name="py", env=True), env=windows_env), "install.ps1", grammar
    ).decode("utf-8")


def test_the_environment_is_extracted_whole_and_swapped_in_order(grammar, windows_env):
    assert env_problems(tree(grammar, env_install(grammar, windows_env))) == []


def test_the_environment_order_check_can_fail(grammar, windows_env):
    source = env_install(grammar, windows_env)
    # The rename before the marker: a folder could appear complete without being so.
    marker = "    [IO.File]::WriteAllText((Join-Path $staging $EnvMarkerFile)"
    moved = source.replace(marker, "    [IO.Directory]::Move($staging, $final)\r\n" + marker)
    assert moved != source
    assert env_problems(tree(grammar, moved)) == [
        "Install-Environment: the marker, then one rename into place, must come last"
    ]
    deleted = source.replace("            [IO.Directory]::Move($Path, $retired)\r\n", "")
    assert deleted != source
    assert "Remove-EnvironmentFolder: rename first" in env_problems(tree(grammar, deleted))[0]


def test_install_runs_no_python(grammar):
    for name in ("install.ps1", "uninstall.ps1"):
        assert python_runs(script(grammar, name)) == [], name
    assert python_runs(tree(grammar, "& $PythonExe -m pip install notebook\r\nStart-Process python.exe\r\n")) == [
        "line 1: & $pythonexe -m pip install notebook",
        "line 2: start-process python.exe",
    ]


# ---- the run's lock: released at the end of the run, not only when the process ends -----------


def _in_finally(node) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type == "finally_clause":
            return True
        parent = parent.parent
    return False


def lock_problems(engine_tree, script_trees: dict) -> list[str]:
    """One lock for every gen-bundle run of the machine: a file in the admin-only state root held
    open with no sharing (not a named mutex, which any user can create first and so block every
    run), taken into $script:Lock after the elevation check and before the hosts file is read,
    given up after $LockWaitSeconds with exit $ExitBusy, and closed by Stop-BundleRun in a
    finally, which each script calls in its own finally: an administrator's console outlives the
    run, and a lock left held there makes Group Policy's next run wait and fail. ``script_trees``:
    each script as it runs (its steps in place)."""
    from support.program import engine_functions

    functions = engine_functions(engine_tree)
    problems = []
    if "threading.mutex" in engine_tree.root_node.text.decode().lower():
        problems.append("a named mutex is a lock: any user can create it first")
    lock = functions.get("lock-genbundle")
    text = lock.text.decode() if lock is not None else ""
    opened = re.search(
        r"\$path = Join-Path \$StateRoot \$LockFile\b.*\[IO\.File\]::Open\(\$path, \[IO\.FileMode\]::OpenOrCreate, "
        r"\[IO\.FileAccess\]::ReadWrite, \[IO\.FileShare\]::None\)",
        text,
        re.DOTALL,
    )
    if not opened:
        problems.append("no step opens $StateRoot's lock file with no sharing")
    if "Stop-Bundle $ExitBusy" not in text or "$Seconds" not in text:
        problems.append("a lock not obtained in time does not end the run with $ExitBusy")
    takes = [
        name
        for name, node in functions.items()
        if any(
            n.type == "assignment_expression" and "$script:Lock = Lock-GenBundle" in n.text.decode() for n in walk(node)
        )
    ]
    if not takes:
        problems.append("no step takes the lock into $script:Lock")
    disposes = "exit-bundlerun" in functions and any(
        n.type == "invocation_expression" and n.text.decode() == "$script:Lock.Dispose()"
        for n in walk(functions["exit-bundlerun"])
    )
    releases = [
        n
        for name, n in commands_in(functions["stop-bundlerun"])
        if name == "exit-bundlerun" or n.text.decode() == "$script:Lock.Dispose()"
    ]
    if not any(_in_finally(n) and (disposes or n.text.decode() == "$script:Lock.Dispose()") for n in releases):
        problems.append("Stop-BundleRun does not close $script:Lock in a finally")
    for script_name, script_tree in script_trees.items():
        calls = [node for name, node in commands(script_tree) if name == "stop-bundlerun"]
        if not any(_in_finally(node) for node in calls):
            problems.append(f"{script_name} does not call Stop-BundleRun in a finally")
        names = [name for name, _ in main_body(script_tree)]
        lock_at = next((i for i, name in enumerate(names) if name in ("enter-bundlerun", "lock-genbundle")), None)
        elevated_at = names.index("confirm-elevated") if "confirm-elevated" in names else None
        read_at = names.index("read-hoststext") if "read-hoststext" in names else None
        if lock_at is None or elevated_at is None or read_at is None or not elevated_at < lock_at < read_at:
            problems.append(f"{script_name} does not take the lock after the elevation check and before reading hosts")
    return problems


def test_each_run_takes_the_machine_lock_and_releases_it(grammar):
    from support.program import engine_name

    for inputs in ({}, {"scope": "user", "user": "CONTOSO\\alice"}):
        files = render_bundle(**inputs)
        engine = tree(grammar, files[engine_name(files)])
        assert lock_problems(engine, {name: script(grammar, name, **inputs) for name in SCRIPTS}) == []


def test_the_lock_check_can_fail(grammar):
    """The control: 0.3.2's lock (under this version's name, so that its body is what is judged), a
    named mutex per bundle taken before the elevation check, given up with $ExitFailure, and
    0.2.2's Stop-BundleRun, which left it to the end of the process."""
    old = r"""
function Lock-GenBundle {
    param([int]$Seconds)
    $mutex = New-Object Threading.Mutex($false, "Global\gen-bundle-$BundleName")
    if (-not $mutex.WaitOne([TimeSpan]::FromSeconds($Seconds))) {
        Stop-Bundle $ExitFailure "another run still runs"
    }
    return $mutex
}
function Read-InstallBundle {
    $script:Lock = Lock-GenBundle -Seconds $LockWaitSeconds
}
function Stop-BundleRun {
    param([string]$PlanPath)
    Write-BundlePlan -Path $PlanPath
    if ($Run.ContainsKey('Transcript') -and $Run.Transcript) {
        Stop-Transcript | Out-Null
    }
}
"""
    steps = (
        "try {\r\n    $script:Lock = Lock-GenBundle -Seconds $LockWaitSeconds\r\n"
        "    $null = Confirm-Elevated -Script 'install.ps1'\r\n    $text = Read-HostsText\r\n} catch { exit 1 }\r\n"
        "Stop-BundleRun -PlanPath $Plan\r\n"
    )
    assert lock_problems(tree(grammar, old), {"install.ps1": tree(grammar, steps)}) == [
        "a named mutex is a lock: any user can create it first",
        "no step opens $StateRoot's lock file with no sharing",
        "a lock not obtained in time does not end the run with $ExitBusy",
        "Stop-BundleRun does not close $script:Lock in a finally",
        "install.ps1 does not call Stop-BundleRun in a finally",
        "install.ps1 does not take the lock after the elevation check and before reading hosts",
    ]


# ---- the 32-bit relaunch: what it forwards arrives whole ----


def ps51_native_argument(value: str) -> str | None:
    """How Windows PowerShell 5.1 writes one argument of a native command into the command line
    (its legacy argument passing, the only one it has): an empty string is dropped; a value with
    whitespace outside double quotes is wrapped in double quotes, and nothing inside is escaped."""
    if value == "":
        return None
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            return f'"{value}"'
    return value


FORWARDED = ["0" * 64, r"C:\plans\plan.json", r"C:\My Plans\plan 1.json", r"\\server\share\gen bundle\plan.json"]
REFUSED = [r"C:\My Plans" + "\\", 'C:\\a"b c.json', r"C:\plans" + "\\"]


def relaunch_refusal(text: str) -> re.Pattern[str]:
    """The pattern the relaunch refuses a value with, from the script (.NET and Python read it alike)."""
    found = re.search(r"elseif \(\[string\]\$parameter\.Value -match '([^']*)'\) \{", text)
    assert found is not None, "the relaunch refuses no value"
    return re.compile(found.group(1))


def test_the_32bit_relaunch_forwards_whole_values_and_refuses_the_rest(wine):
    text = render_bundle()["install.ps1"].decode("utf-8-sig")
    refused = relaunch_refusal(text)
    program = r"C:\Windows\Sysnative\WindowsPowerShell\v1.0\powershell.exe"
    for value in FORWARDED + REFUSED:
        parts = ["-NoProfile", "-File", r"C:\bundle dir\install.ps1", "-Plan", value, "-Force"]
        line = " ".join(p for p in (ps51_native_argument(part) for part in [program, *parts]) if p is not None)
        arrived = wine.split_command_line(line)[1:] == parts
        # Forwarded exactly when it arrives whole; the refused ones would not.
        assert arrived == (refused.search(value) is None), (value, line)
    # An empty value would vanish from the line and the next one take its place: it is left out.
    assert ps51_native_argument("") is None
    assert "} elseif ([string]$parameter.Value) {" in text
