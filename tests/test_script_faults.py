"""The faults a Windows expert found by reading the scripts, each with a check that passes on
the rendered scripts and fails on the old shape (kept here as a few lines, or made by undoing
the fix in the rendered text). The folder-level ACLs are in test_install_hardening.py, the
32-bit relaunch, the Remote Desktop check, the ctypes types and the watchdog's depth in
test_windows_api.py, the launcher's chcp in test_launcher_wine.py; what only Windows can
show is in tests/pester/.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from generator.environment.build import ENV_FOLDER_FORMS, env_folder_prefix
from generator.render import render
from generator.spec import build_spec
from generator.winpath import MAX_FOLDER_CHARS, MAX_PATH_CHARS

from conftest import CANONICAL, REPO, XSD_DIR, render_bundle
from support import program, pscommands, pwsh, unroll

USER = {"scope": "user", "user": "CONTOSO\\alice"}


def run(grammar, files: dict[str, bytes], script: str):
    """The script as it runs: its steps with the engine's step functions in place, then the engine."""
    from support.program import inlined

    return grammar.parse(inlined(files, script, grammar))


def tree(grammar, source: bytes | str):
    return grammar.parse(source.encode() if isinstance(source, str) else pwsh.script_text(source))


def function(root, name: str):
    return next(
        n
        for n in pwsh.walk(root.root_node)
        if n.type == "function_statement"
        and next(c for c in n.children if c.type == "function_name").text.decode() == name
    )


def calls_of(node, name: str) -> list:
    return [n for n in pwsh.walk(node) if n.type == "command" and pwsh._command_name(n) == name.lower()]


# ---- a task an administrator disabled: install.ps1 and detect.ps1 agree -------------------


def detect_disabled_answer(root) -> str | None:
    """What Test-Installed answers for gen-bundle's disabled task, when it decides that before
    any other check: 'installed' (what install.ps1's exit 0 with no change needs), or None."""
    body = function(root, "Test-Installed")
    for node in pwsh.walk(body):
        if node.type == "if_statement" and "Test-TaskDisabledByAdmin" in node.children[2].text.decode():
            returns = [n.text.decode() for n in pwsh.walk(node) if n.type == "flow_control_statement"]
            first_check = min(
                (
                    n.start_byte
                    for n in pwsh.walk(body)
                    if n.type == "command" and pwsh._command_name(n) in ("test-path", "get-filehash", "read-hoststext")
                ),
                default=body.end_byte,
            )
            if returns == ["return $true"] and node.start_byte < first_check:
                return "installed"
    return None


def test_detect_reports_a_disabled_task_as_install_leaves_it(grammar):
    for inputs in ({}, USER):
        files = render_bundle(**inputs)
        assert detect_disabled_answer(run(grammar, files, "detect.ps1")) == "installed"
        # install.ps1 decides the same case with the same function (and exits 0 before any change:
        # test_install_hardening.py).
        install = run(grammar, files, "install.ps1")
        assert any(
            "Test-TaskDisabledByAdmin -Task $task" in n.children[2].text.decode() and "Stop-Bundle 0" in n.text.decode()
            for n in pwsh.walk(install.root_node)
            if n.type == "if_statement"
        )


def test_the_disabled_task_agreement_check_can_fail(grammar):
    old = (
        "function Test-Installed {\r\n    if (-not (Test-Path -LiteralPath $x)) {\r\n"
        "        return $false\r\n    }\r\n"
        "    $task = @(Get-OurTask)\r\n"
        "    if ($task.Count -eq 0 -or $task[0].Author -ne 'gen-bundle' -or $task[0].State -eq 'Disabled') {\r\n"
        "        return $false\r\n    }\r\n    return $true\r\n}\r\n"
    )
    assert detect_disabled_answer(tree(grammar, old)) is None


# ---- %ProgramData%\jupyter: uninstall.ps1 removes it only when install.ps1 made it ---------


def jupyter_removal_problems(uninstall, install) -> list[str]:
    problems = []
    removals = [n for n in calls_of(uninstall.root_node, "Remove-Item") if "$JupyterShared" in n.text.decode()]
    if not removals:
        return ["uninstall.ps1 never removes %ProgramData%\\jupyter"]
    for removal in removals:
        conditions, child, parent = [], removal, removal.parent
        while parent is not None:
            if parent.type in ("if_statement", "elseif_clause") and child.type == "statement_block":
                conditions.append(parent.children[2].text.decode())
                # the branches before this one in the same chain are its conditions too, negated
                chain = parent if parent.type == "if_statement" else parent.parent.parent
                conditions += [chain.children[2].text.decode()] + [
                    c.children[2].text.decode()
                    for c in pwsh.walk(chain)
                    if c.type == "elseif_clause" and c.start_byte < removal.start_byte
                ]
            child, parent = parent, parent.parent
        if not any("Get-ReceiptValue $Run.Receipt 'jupyterSharedCreated'" in c for c in conditions):
            problems.append(f"line {removal.start_point[0] + 1}: removed without the receipt saying install made it")
        # Another bundle's servers rely on it too: no other bundle's receipt in $StateRoot.
        if not any("$StateRoot" in c and "$ReceiptPath" in c for c in conditions):
            problems.append(f"line {removal.start_point[0] + 1}: removed while another bundle may be installed")
    written = [
        n
        for n in pwsh.walk(install.root_node)
        if n.type == "hash_entry" and n.children[0].text.decode() == "jupyterSharedCreated"
    ]
    if not written:
        problems.append("install.ps1's receipt does not say whether it created %ProgramData%\\jupyter")
    return problems


def test_uninstall_deletes_programdata_jupyter_only_when_install_created_it(grammar):
    files = render_bundle()
    assert jupyter_removal_problems(run(grammar, files, "uninstall.ps1"), run(grammar, files, "install.ps1")) == []


def test_the_jupyter_removal_check_can_fail(grammar):
    old_uninstall = tree(
        grammar,
        (
            "if ((Test-Path -LiteralPath $JupyterShared -PathType Container) -and @(Get-ChildItem -LiteralPath "
            "$JupyterShared -Force).Count -eq 0 -and $PSCmdlet.ShouldProcess($JupyterShared, 'Delete')) {\r\n"
            "    Remove-Item -LiteralPath $JupyterShared -Force\r\n}\r\n"
        ),
    )
    old_install = tree(grammar, "$receipt = [ordered]@{\r\n    jupyterShared = $JupyterShared\r\n}\r\n")
    assert jupyter_removal_problems(old_uninstall, old_install) == [
        "line 2: removed without the receipt saying install made it",
        "line 2: removed while another bundle may be installed",
        "install.ps1's receipt does not say whether it created %ProgramData%\\jupyter",
    ]
    # 0.2.0 before its review: the receipt asked, other bundles not.
    files = render_bundle()
    engine = files[next(name for name in files if name.endswith(".psm1"))].decode("utf-8-sig")
    start = engine.index("    } elseif (@(Get-ChildItem -LiteralPath $StateRoot")
    end = engine.index("    } elseif (", start + 1)
    files[next(name for name in files if name.endswith(".psm1"))] = (engine[:start] + engine[end:]).encode("utf-8-sig")
    found = jupyter_removal_problems(run(grammar, files, "uninstall.ps1"), run(grammar, files, "install.ps1"))
    assert found and all(f.endswith(": removed while another bundle may be installed") for f in found), found


# ---- the task's enumerations, compared in every form Windows hands them back in ------------

TASK_ENUM_PROPERTIES = ("State", "RunLevel", "MultipleInstances", "LogonType", "ProcessTokenSidType")


def enum_comparison_problems(root) -> list[str]:
    """A task enumeration compared as text (-eq, -ne, [string]::Equals) outside Test-TaskValue:
    Windows may hand it back as a number, and the task would be registered again at every boot."""
    problems = []
    for node in pwsh.walk(root.root_node):
        text = node.text.decode()
        if node.type not in ("comparison_expression", "invocation_expression"):
            continue
        if node.type == "invocation_expression" and not text.startswith("[string]::Equals("):
            continue
        for prop in TASK_ENUM_PROPERTIES:
            if re.search(rf"\.{prop}\b", text) and pwsh._enclosing_function(node) != "test-taskvalue":
                if node.type == "comparison_expression" and re.search(r"-(c|i)?(eq|ne)\b", text) is None:
                    continue
                problems.append(f"line {node.start_point[0] + 1}: {text[:70]}")
                break
    return problems


def task_enum_numbers(root) -> dict[str, dict[str, int]]:
    table = next(
        n
        for n in pwsh.walk(root.root_node)
        if n.type == "assignment_expression" and n.children[0].text.decode() == "$TaskEnums"
    )
    found = {}
    for entry in (
        n
        for n in pwsh.walk(table)
        if n.type == "hash_entry"
        and n.parent.parent.parent.parent == table
        or (n.type == "hash_entry" and "@{" in n.text.decode())
    ):
        name = entry.children[0].text.decode()
        found[name] = {k: int(v) for k, v in re.findall(r"(\w+) = (\d+)", entry.text.decode())}
    return found


def test_task_enumerations_are_compared_as_names_and_numbers(grammar):
    for script in ("install.ps1", "detect.ps1"):
        for inputs in ({}, USER):
            root = run(grammar, render_bundle(**inputs), script)
            assert enum_comparison_problems(root) == [], script
    numbers = task_enum_numbers(run(grammar, render_bundle(), "install.ps1"))
    # Task Scheduler's own numbers (learn.microsoft.com/windows/win32/taskschd: RegisteredTask.State,
    # Principal.RunLevel, TaskSettings.MultipleInstances); the schema lists MultipleInstancesPolicy's
    # values in that order.
    assert numbers["State"] == {"Unknown": 0, "Disabled": 1, "Queued": 2, "Ready": 3, "Running": 4}
    assert numbers["RunLevel"] == {"Limited": 0, "Highest": 1}
    # TASK_PROCESSTOKENSID_TYPE (taskschd.h; Principal2.ProcessTokenSidType): the broker's task is Unrestricted.
    assert numbers["ProcessTokenSidType"] == {"None": 0, "Unrestricted": 1, "Default": 2}
    schema = ET.parse(XSD_DIR / "microsoft-docs-task-scheduler.xsd").getroot()
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    policy = next(
        t
        for t in schema.iter("{http://www.w3.org/2001/XMLSchema}simpleType")
        if t.get("name") == "multipleInstancesPolicyType"
    )
    values = [e.get("value") for e in policy.findall(".//xs:enumeration", ns)]
    assert numbers["MultipleInstances"] == {value: i for i, value in enumerate(values)}


def test_the_enumeration_check_can_fail(grammar):
    old = (
        "$same = ([string]$task.State -ne 'Disabled') -and\r\n"
        "    ([string]$task.Principal.RunLevel -eq 'Limited') -and\r\n"
        "    ([string]$task.Settings.MultipleInstances -eq\r\n"
        "        [string]$wanted.Task.Settings.MultipleInstancesPolicy)\r\n"
        "if ($task[0].State -eq 'Disabled') { }\r\n"
    )
    assert [p.split(":")[0] for p in enum_comparison_problems(tree(grammar, old))] == [
        "line 1",
        "line 2",
        "line 3",
        "line 5",
    ]


# ---- reading what a user wrote: the encoding is named ----------------------------------------


def encoding_problems(root) -> list[str]:
    """Get-Content and its kin without -Encoding: Windows PowerShell 5.1 reads and writes the
    ANSI code page, PowerShell 7 UTF-8 (about_Character_Encoding)."""
    return [
        f"line {n.start_point[0] + 1}: {n.text.decode()[:60]}"
        for name in ("Get-Content", "Set-Content", "Add-Content", "Out-File")
        for n in calls_of(root.root_node, name)
        if not re.search(r"\s-Encoding\s", n.text.decode())
    ]


def test_text_files_are_read_with_their_encoding(grammar):
    for script in ("install.ps1", "uninstall.ps1", "detect.ps1"):
        assert encoding_problems(run(grammar, render_bundle(), script)) == [], script


def test_the_encoding_check_can_fail(grammar):
    old = "foreach ($line in @(Get-Content -LiteralPath $log -Tail $LogTailLines)) { }\r\n"
    assert encoding_problems(tree(grammar, old)) == ["line 1: Get-Content -LiteralPath $log -Tail $LogTailLines"]


# ---- walking folders: one that cannot be read is a finding, not the end of the run ----------

ENUMERATIONS = ("getdirectories", "getfiles", "enumeratedirectories", "enumeratefiles", "getfilesystementries")
# Listings that may fail the run, and why that is right.
WALKS_THAT_MAY_FAIL = {
    "install-environment": "counts the staging folder it has just extracted, admin-only, whose paths the build "
    "keeps within Windows PowerShell 5.1's limits: a failure there fails the extraction",
}


def unguarded_walks(root) -> list[str]:
    """Every listing of a folder tree (.NET's GetDirectories/GetFiles/Enumerate*) inside a try
    whose catch handles the folder that cannot be read (access denied, a path longer than
    Windows PowerShell 5.1 reads): otherwise the trap ends the run with 1603."""
    problems = []
    for node in pwsh.walk(root.root_node):
        if node.type != "invocation_expression":
            continue
        member = next((c for c in node.children if c.type == "member_name"), None)
        if member is None or member.text.decode().lower() not in ENUMERATIONS:
            continue
        if pwsh._enclosing_function(node) in WALKS_THAT_MAY_FAIL:
            continue
        parent, inside = node.parent, False
        while parent is not None:
            if parent.type == "statement_block" and parent.parent is not None and parent.parent.type == "try_statement":
                inside = any(c.type == "catch_clauses" for c in parent.parent.children)
                break
            parent = parent.parent
        if not inside:
            problems.append(f"line {node.start_point[0] + 1}: {node.text.decode()[:70]}")
    return problems


@pytest.mark.parametrize("script", ["install.ps1", "uninstall.ps1", "detect.ps1"])
def test_folder_walks_survive_a_folder_they_cannot_read(grammar, script):
    assert unguarded_walks(run(grammar, render_bundle(), script)) == []


def test_the_walk_check_can_fail(grammar):
    old = (
        "foreach ($name in @('Lib', 'DLLs')) {\r\n    $paths += @([IO.Directory]::GetDirectories($tree, '*', "
        "[IO.SearchOption]::AllDirectories))\r\n}\r\n"
        "return [string]([IO.Directory]::GetFiles($folder, '*', [IO.SearchOption]::AllDirectories).Length)\r\n"
    )
    assert [p.split(":")[0] for p in unguarded_walks(tree(grammar, old))] == ["line 2", "line 4"]


def test_the_longest_path_of_the_environment_fits_windows_powershell(windows_env, grammar):
    """Every file and folder of the real --env archive, below the longest name install.ps1 gives
    the environment's folder (its staging folder while it extracts, .remove while it deletes),
    under the usual C:\\Program Files: within what Windows PowerShell 5.1 can create and write."""
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(windows_env.archive)).namelist()
    prefix = env_folder_prefix("py")
    longest_file = max(len(prefix) + len(n) for n in names)
    longest_folder = max(len(prefix) + len(n.rpartition("/")[0]) for n in names)
    assert longest_file <= MAX_PATH_CHARS and longest_folder <= MAX_FOLDER_CHARS, (longest_file, longest_folder)
    # The build's prefix is the longest folder name the scripts use: undo the staging name, and
    # a prefix shorter than what install.ps1 writes into shows.
    install = run(grammar, render(build_spec(**CANONICAL, env=True), env=windows_env), "install.ps1")
    text = install.root_node.text.decode()
    used = set(
        re.findall(
            r"\"\.\$EnvFolder\.(\w+)\"|'\.' \+ \$leaf\.TrimStart\('\.'\)\.Replace\('\.partial', ''\) \+ '\.(\w+)'", text
        )
    )
    suffixes = {s for pair in used for s in pair if s}
    assert suffixes == {"partial", "remove"}
    assert {f".env-{{id}}.{s}" for s in suffixes} | {"env-{id}"} == set(ENV_FOLDER_FORMS)
    assert prefix.endswith("\\.env-000000000000.partial\\")
    print(
        f"longest file {longest_file}, longest folder {longest_folder} characters (limits {MAX_PATH_CHARS}, "
        f"{MAX_FOLDER_CHARS})"
    )


# ---- uninstall.ps1 and detect.ps1 check themselves, with the pin as install.ps1 does -------


def pin_problems(root, script: str) -> list[str]:
    """The script takes -SumsSha256 and hands it to the step that reads SHA256SUMS, which hands
    it to Read-VerifiedBundle; and lists itself among the files it checks."""
    problems = []
    params = [
        n.text.decode()
        for n in pwsh.walk(root.root_node)
        if n.type == "script_parameter" and pwsh._enclosing_function(n) is None
    ]
    if "[string]$SumsSha256" not in params:
        problems.append(f"{script} has no -SumsSha256")
    top = [n for n in pwsh.walk(root.root_node) if n.type == "command" and pwsh._enclosing_function(n) is None]
    step = next((n for n in top if "-PinnedSums $SumsSha256" in n.text.decode()), None)
    reads = [n for n in calls_of(root.root_node, "Read-VerifiedBundle") if "-PinnedSums $PinnedSums" in n.text.decode()]
    if step is None or not any(pwsh._enclosing_function(n) == pwsh._command_name(step) for n in reads):
        problems.append(f"{script} does not check SHA256SUMS against -SumsSha256")
    values = pwsh.assignments(root)
    if script not in str(values.get("BundleFiles", "")):
        problems.append(f"{script} does not check its own bytes")
    return problems


@pytest.mark.parametrize("script", ["uninstall.ps1", "detect.ps1"])
def test_uninstall_and_detect_check_themselves_against_the_pin(grammar, script):
    files = render_bundle()
    engine = grammar.parse(pwsh.script_text(files[next(n for n in files if n.endswith(".psm1"))]))
    both = grammar.parse(pwsh.script_text(files[script]) + engine.root_node.text)
    assert pin_problems(both, script) == []
    if script == "uninstall.ps1":  # before any change: first of its steps
        body = [
            pwsh._command_name(n)
            for n in pwsh.walk(run(grammar, files, script).root_node)
            if n.type == "command" and pwsh._enclosing_function(n) is None and pwsh._command_name(n) is not None
        ]
        assert body.index("read-verifiedbundle") < body.index("confirm-elevated") < body.index("enter-bundlerun")


def test_the_pin_check_can_fail(grammar):
    old = "[CmdletBinding(SupportsShouldProcess = $true)]\r\nparam(\r\n    [switch]$Force\r\n)\r\n$x = 1\r\n"
    assert pin_problems(tree(grammar, old), "uninstall.ps1") == [
        "uninstall.ps1 has no -SumsSha256",
        "uninstall.ps1 does not check SHA256SUMS against -SumsSha256",
        "uninstall.ps1 does not check its own bytes",
    ]


# ---- the READMEs say what each scope closes, and the two policies before deployment --------


def section(markdown: str, title: str) -> str:
    """A section's text, from its heading to the next heading of the same or a higher level."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt().parse(markdown)
    lines = markdown.splitlines()
    start = level = None
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            text = tokens[i + 1].content
            depth = int(token.tag[1])
            if start is None and text == title:
                start, level = token.map[0], depth
            elif start is not None and depth <= level:
                return "\n".join(lines[start : token.map[0]])
    assert start is not None, title
    return "\n".join(lines[start:])


POLICIES = ("Configure list of allowed authentication servers", "Authentication server allowlist")
# What the threat model of Shared PCs takes in turn, in both scopes (the broker's, docs/broker.md).
THREATS = (
    "Who is trusted.",
    "Another local account",
    "A malicious notebook",
    "A website in the user's browser",
    "A process that listens on `0.0.0.0:",
    "What stays open:",
)
# What went with the broker: the token sign-in, its files, the guard's check and the Session Host refusal.
GONE = {
    "?token=": re.compile(r"\?token="),
    "the token file": re.compile(r"gen-bundle\\[a-z0-9-]+\\token\b"),
    "server.pid": re.compile(r"server\.pid"),
    "-AllowSessionHost": re.compile(r"AllowSessionHost"),
    "the Session Host refusal": re.compile(r"refuses? (this bundle|a Remote Desktop Session Host)"),
    "the guard's check": re.compile(r"guard\.py`? `?check\b|asks? `?start-[a-z0-9-]+\.guard\.py`? who holds"),
}


def readme_problems(markdown: str, scope: str) -> list[str]:
    problems = []
    flat = " ".join(markdown.split())
    install = " ".join(section(markdown, "Install").split())
    for policy in POLICIES:
        if policy not in install:
            problems.append(f"Install does not name the policy '{policy}'")
    for what, pattern in GONE.items():
        if pattern.search(markdown):
            problems.append(f"the README still names {what}")
    shared = " ".join(section(markdown, "Shared PCs").split())
    for threat in THREATS:
        if threat not in shared:
            problems.append(f"Shared PCs does not take '{threat}' in turn")
    if "from boot, exclusively, and never lets go" not in shared:
        problems.append("Shared PCs does not say that the broker holds the address from boot")
    if "any program of any local account can listen" not in shared:
        problems.append("Shared PCs does not say that any account can take the address while the broker does not run")
    if scope == "user":
        for claim in (
            "every user's server listens on",
            "give each user there a bundle of their own",
            "Only separate addresses per user",
        ):
            if claim in flat:
                problems.append(f"the user-scope README says '{claim}'")
        if "gets the broker's *not running* page" not in shared:
            problems.append("the user-scope README does not say what other accounts get")
    elif "its own server, registered from its own session" not in shared:
        problems.append("the machine-scope README does not say that each account gets its own server")
    return problems


def test_each_scope_readme_says_what_it_closes_and_what_not():
    assert readme_problems(render_bundle()["README.md"].decode(), "machine") == []
    assert readme_problems(render_bundle(**USER)["README.md"].decode(), "user") == []
    assert readme_problems(render_bundle(auth="none")["README.md"].decode(), "machine") == []
    # The project README names the two policies in its deployment steps, too.
    project = (REPO / "README.md").read_text(encoding="utf-8")
    steps = " ".join(section(project, "How IT deploys it").split())
    assert all(policy in steps for policy in POLICIES)


def test_the_readme_check_can_fail():
    old = (
        "# Bundle\n\n## Install\n\nOne PC.\n\n## Shared PCs\n\nOne address per machine: every user's server "
        "listens on it; give each user there a bundle of their own (--scope user) instead. Only separate "
        "addresses per user close this. The Start-menu entry opens `http://py/?token=<secret>` once "
        "`%LOCALAPPDATA%\\gen-bundle\\py\\token` and `server.pid` say so; install.ps1 refuses a Remote "
        "Desktop Session Host unless run with -AllowSessionHost. Before each start the launcher asks "
        "`start-py.guard.py` who holds the address.\n"
    )
    assert readme_problems(old, "user") == [
        f"Install does not name the policy '{POLICIES[0]}'",
        f"Install does not name the policy '{POLICIES[1]}'",
        *[f"the README still names {what}" for what in GONE],
        *[f"Shared PCs does not take '{threat}' in turn" for threat in THREATS],
        "Shared PCs does not say that the broker holds the address from boot",
        "Shared PCs does not say that any account can take the address while the broker does not run",
        "the user-scope README says 'every user's server listens on'",
        "the user-scope README says 'give each user there a bundle of their own'",
        "the user-scope README says 'Only separate addresses per user'",
        "the user-scope README does not say what other accounts get",
    ]
    assert (
        readme_problems(old, "machine")[-1]
        == "the machine-scope README does not say that each account gets its own server"
    )


def test_every_call_binds_after_the_fixes(grammar):
    """The new helpers are called with the parameters they declare (the script's own functions
    are bound like cmdlets in test_windows_api.py; here the ones this change added)."""
    root = run(grammar, render_bundle(), "install.ps1")
    own = pscommands.functions(root)
    for name in (
        "Test-TaskCurrent",
        "Test-TaskShape",
        "Test-BrokerTaskCurrent",
        "Test-BrokerRunning",
        "Test-BrokerCommandLine",
        "Test-BrokerAnswer",
        "Test-ServerRegistered",
        "Write-BrokerReport",
        "Get-BundleProcess",
        "Get-OurTask",
        "Get-AdminOnlyProblem",
        "New-AdminOnlyFolder",
        "New-AdminOnlySecurity",
        "Test-TaskValue",
        "Test-TaskDisabledByAdmin",
        "Get-ReceiptValue",
        "Test-UsersRead",
    ):
        calls = [c for c in pscommands.calls(root) if c.name.lower() == name.lower()]
        assert calls, name
        for call in calls:
            assert pscommands.bind(call, own[name.lower()]) == [], (name, call.line)


# ---- arrays that a statement's output would unroll ------------------------------------------

# .NET calls that return an array PowerShell must keep whole (a byte[] handed to GetString,
# MemoryStream, WriteAllBytes): the value of an if, foreach or switch is its pipeline output,
# which PowerShell unrolls into an object[] (an empty array into $null).
ARRAY_CALLS = re.compile(r"::ReadAllBytes\(|\.GetBytes\(|\.ToArray\(\)|\[byte\[\]\]", re.I)
STATEMENT_VALUES = ("if_statement", "foreach_statement", "switch_statement", "while_statement")


def unrolled_arrays(root) -> list[str]:
    found = []
    for node in pwsh.walk(root.root_node):
        if node.type != "assignment_expression":
            continue
        value = node.children[-1]
        if value.type in STATEMENT_VALUES and ARRAY_CALLS.search(value.text.decode()):
            found.append(f"line {node.start_point[0] + 1}: {node.text.decode().splitlines()[0][:80]}")
    return found


@pytest.mark.parametrize("inputs", [{}, {"scope": "user", "user": "CONTOSO\\alice", "window": "minimized"}])
def test_no_array_is_assigned_through_a_statements_output(grammar, inputs):
    files = render_bundle(**inputs)
    for name in ["install.ps1", "uninstall.ps1", "detect.ps1", next(n for n in files if n.endswith(".psm1"))]:
        assert unrolled_arrays(tree(grammar, files[name])) == [], name


def test_the_unrolled_array_check_can_fail(grammar):
    old = (
        "$engineBytes = if (Test-Path -LiteralPath $enginePath -PathType Leaf) { [IO.File]::ReadAllBytes($enginePath) }"
        " else { [byte[]]@() }\r\n"
    )
    assert unrolled_arrays(tree(grammar, old)) == [f"line 1: {old.splitlines()[0][:80]}"]
    assert unrolled_arrays(tree(grammar, "$n = if ($a) { 1 } else { 2 }\r\n")) == []


# The same unrolling found from the variable's use (support/unroll.py): the statement, script
# block or function whose output is assigned need not hold an array-making call itself.
UNROLLED_CONTROLS = {
    # The shape: the array is assigned elsewhere; the if writes it, unrolled ($null when empty).
    "$engineBytes = [byte[]]@()\r\n$other = [IO.File]::ReadAllBytes($p)\r\n": (
        "$bytes = if ($useEngine) { $engineBytes } else { $other }\r\n$size = $bytes.Length\r\n",
        "line 3: $bytes = if ($useEngine) { $engineBytes } else { $other } (if; then $bytes.Length at line 4)",
    ),
    "$chunk = [byte[]]@()\r\n": (
        "$data = foreach ($part in $parts) { $part }\r\n[IO.File]::WriteAllBytes($path, $data)\r\n",
        "line 2: $data = foreach ($part in $parts) { $part } (foreach; then [IO.File]::WriteAllBytes($path, $data) at line 3)",
    ),
    # A function's array result: one line gives a string, whose [0] is its first character.
    "function Get-Lines {\r\n    param([string]$Path)\r\n    return [IO.File]::ReadAllLines($Path)\r\n}\r\n": (
        "$lines = Get-Lines -Path $p\r\n$first = $lines[0]\r\n",
        "line 5: $lines = Get-Lines -Path $p (get-lines; then $lines[0] at line 6)",
    ),
    # A script block's several outputs: .Count of a single one throws in 5.1 under Set-StrictMode.
    "$files = @(Get-ChildItem -LiteralPath $folder)\r\n": (
        "$names = & { foreach ($file in $files) { $file.Name } }\r\nif ($names.Count -gt 1) { }\r\n",
        "line 2: $names = & { foreach ($file in $files) { $file.Name } } (a script block; then $names.Count at line 3)",
    ),
}
# Shapes the check leaves, on purpose: wrapped in @() or a typed variable; scalars (a string's
# .Length and [0] are its own); a hashtable looked up by key; re-wrapped before the use; used only
# through @() or foreach; a function whose branches each return one value.
UNROLLED_SAFE = (
    "$engineBytes = [byte[]]@()\r\n$bytes = @(if ($a) { $engineBytes } else { $other })\r\n$n = $bytes.Length\r\n"
    "[byte[]]$kept = if ($a) { $engineBytes } else { $other }\r\n$m = $kept.Length\r\n"
    "$text = if ($a) { 'x' } else { 'yy' }\r\n$k = $text.Length + $text[0].Length\r\n"
    "$table = if ($a) { @{ a = 1 } } else { @{} }\r\n$v = $table['a']\r\n"
    '$rules = foreach ($r in $list) { "$r" }\r\n$rules = @($rules)\r\n$c = $rules.Count\r\n'
    "$items = foreach ($r in $list) { $r }\r\n$d = @($items).Count\r\nforeach ($item in $items) { }\r\n"
    "function Get-Name {\r\n    if ($a) {\r\n        return 'a'\r\n    }\r\n    return 'b'\r\n}\r\n$name = Get-Name\r\n$first = $name[0]\r\n"
)


@pytest.mark.parametrize("inputs", [{}, {"scope": "user", "user": "CONTOSO\\alice", "window": "minimized"}])
def test_no_unrolled_output_is_used_as_an_array(grammar, inputs):
    files = render_bundle(**inputs)
    for name in ["install.ps1", "uninstall.ps1", "detect.ps1", program.engine_name(files)]:
        assert unroll.unrolled_outputs(tree(grammar, files[name])) == [], name


@pytest.mark.parametrize("script", sorted(UNROLLED_CONTROLS))
def test_the_unrolled_output_check_can_fail(grammar, script):
    """Each planted assignment is found from its use; without it the script passes; and the
    check by array-making calls (unrolled_arrays above) does not see it."""
    planted, said = UNROLLED_CONTROLS[script]
    assert unroll.unrolled_outputs(tree(grammar, script)) == []
    assert unroll.unrolled_outputs(tree(grammar, script + planted)) == [said]
    assert unrolled_arrays(tree(grammar, script + planted)) == []


def test_the_unrolled_output_check_leaves_whole_arrays_and_scalars(grammar):
    assert unroll.unrolled_outputs(tree(grammar, UNROLLED_SAFE)) == []


def test_the_unrolled_output_check_fails_in_the_real_install_script(grammar):
    """Planted in install.ps1 as rendered: the engine's bytes read by a cmdlet through an if (an
    empty file: $null), then read by the script's own lines (GetString, the MemoryStream, WriteAllBytes)."""
    files = render_bundle()
    root = tree(grammar, files["install.ps1"])
    read = next(
        n
        for n in pwsh.walk(root.root_node)
        if n.type == "if_statement" and b"$engineBytes = [IO.File]::ReadAllBytes(" in n.text
    )
    data = pwsh.script_text(files["install.ps1"])
    planted = (
        b"\r\n$engineBytes = if (Test-Path -LiteralPath $enginePath -PathType Leaf) "
        b"{ Get-Content -LiteralPath $enginePath -Encoding Byte -ReadCount 0 }"
    )
    text = data[: read.end_byte] + planted + data[read.end_byte :]
    found = unroll.unrolled_outputs(tree(grammar, text))
    line = read.end_point[0] + 2
    assert [problem.split(" (")[0].split(":")[0] for problem in found] == [f"line {line}"], found
    assert unrolled_arrays(tree(grammar, text)) == []


# ---- the broker: its task compared with its XML, started before any server, never stopped as one ----

TASK_NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


def xml_path_problems(root, xml: bytes, functions: tuple[str, ...]) -> list[str]:
    """Every path into a task XML that these functions read ($Wanted.Task.X.Y, $Run.BrokerTaskWanted...,
    and the variables they set from one) is an element of ``xml``: [xml] hands back $null for a path
    that is not there, and Test-BrokerTaskCurrent would then never be true (the task registered again
    at every boot), or a Confirm-Change text would name nothing."""
    document = ET.fromstring(xml.decode("utf-16"))
    problems = []
    for name in functions:
        text = function(root, name).text.decode()
        roots = {"Wanted": "", "Run.BrokerTaskWanted": ""}
        for alias, _base, rest in re.findall(r"\$(\w+) = \$(Wanted|Run\.BrokerTaskWanted)((?:\.\w+)+)", text):
            roots[alias] = rest
        for variable, prefix in roots.items():
            for path in re.findall(rf"\${re.escape(variable)}((?:\.\w+)+)", text):
                parts = (prefix + path).split(".")[1:]
                if parts[0] != "Task":
                    problems.append(f"{name}: ${variable}{path} does not start at the task")
                    continue
                node = document
                for part in parts[1:]:
                    node = node.find(TASK_NS + part) if node is not None else None
                if node is None:
                    problems.append(f"{name}: ${variable}{path} is no element of the task XML")
    return problems


def test_the_broker_task_is_compared_with_what_its_xml_says(grammar):
    for inputs in ({}, USER):
        files = render_bundle(**inputs)
        root = run(grammar, files, "install.ps1")
        assert (
            xml_path_problems(
                root, files["py.broker.task.xml"], ("Test-TaskShape", "Test-BrokerTaskCurrent", "Install-BrokerTask")
            )
            == []
        )
        assert xml_path_problems(root, files["py.task.xml"], ("Test-TaskShape",)) == []
    text = function(root, "Test-BrokerTaskCurrent").text.decode()
    for part in (
        "-TriggerClass 'MSFT_TaskBootTrigger'",
        "ConvertTo-Sid ([string]$Task.Principal.UserId)",
        "-Enum 'ProcessTokenSidType' -Name $principal.ProcessTokenSidType",
        "@($Task.Principal.RequiredPrivilege) -join ','",
    ):
        assert part in text, part


def test_the_task_xml_check_can_fail(grammar):
    files = render_bundle()
    source = run(grammar, files, "install.ps1").root_node.text.decode()
    planted = source.replace("-Name $principal.ProcessTokenSidType", "-Name $principal.TokenSidType", 1)
    planted = planted.replace("$Wanted.Task.Settings.ExecutionTimeLimit", "$Wanted.Task.Settings.TimeLimit", 1)
    assert planted != source
    assert xml_path_problems(
        tree(grammar, planted), files["py.broker.task.xml"], ("Test-TaskShape", "Test-BrokerTaskCurrent")
    ) == [
        "Test-TaskShape: $Wanted.Task.Settings.TimeLimit is no element of the task XML",
        "Test-BrokerTaskCurrent: $principal.TokenSidType is no element of the task XML",
    ]


def broker_order_problems(root) -> list[str]:
    """install.ps1 as it runs: the broker's log folder (its task SID may write) before its task, the
    task before the broker starts, a running broker never stopped (only its worker, once its new
    file is written), and the broker started and heard before the logon task starts any server
    (which registers with it)."""
    from test_install_hardening import main_body

    body = main_body(root)

    def in_catch(node) -> bool:  # a recovery path (a failed write starts the broker again), not the order
        while node is not None and node.type != "catch_clause":
            node = node.parent
        return node is not None

    def first(name: str, part: str) -> int | None:
        return next(
            (n.start_byte for called, n in body if called == name and part in n.text.decode() and not in_catch(n)), None
        )

    steps = {
        "the broker's log folder": first("new-adminonlyfolder", "-Writer $BrokerTaskSid"),
        "its task registered": first("register-scheduledtask", "$Run.BrokerTaskXml"),
        "the broker started": first("start-scheduledtask", "-TaskName $BrokerTaskName"),
        "the broker heard": first("test-brokeranswer", ""),
        "the logon task started": first("start-scheduledtask", "-TaskName $TaskName "),
    }
    problems = [f"{step} is missing" for step, at in steps.items() if at is None]
    order = [step for step, at in sorted(steps.items(), key=lambda item: item[1] or 0) if at is not None]
    if not problems and order != list(steps):
        problems.append(f"in the order {order}")
    # A running broker is never stopped for a new file or task definition: while none runs, any
    # account could take the address. Its supervisor starts a new worker from the new file.
    files_text = function(root, "Install-BundleFiles").text.decode()
    task_text = function(root, "Install-BrokerTask").text.decode()
    if any(stop in text for stop in ("Stop-BrokerTask", "Stop-BrokerForChange") for text in (files_text, task_text)):
        problems.append("a running broker is stopped for a new file or definition")
    write = files_text.find("Write-SwappedFile -Path $target -Bytes $bundle[$file]")
    if write < 0 or files_text.find("Restart-BrokerWorker", write) < 0:
        problems.append("the broker's worker does not start again from its new file")
    workers = function(root, "Restart-BrokerWorker").text.decode()
    if "($file + '\"?\\s+worker\\s')" not in workers or "{ -not (Test-LoggedBroker $_) }" not in workers:
        problems.append("Restart-BrokerWorker may stop the broker's supervisor")
    return problems


def moved_step(step: str, *, after: str) -> tuple[dict, str, str, str]:
    """The canonical bundle, its engine's name and text, and install.ps1 with ``step`` moved
    to just after the line ``after``: the shape of a step made too late."""
    files = render_bundle()
    install = files["install.ps1"].decode("utf-8-sig")
    assert step in install and after in install
    engine = program.engine_name(files)
    return files, engine, files[engine].decode("utf-8-sig"), install.replace(step, "").replace(after, after + step)


def test_the_broker_runs_before_any_server_registers(grammar):
    for inputs in ({}, USER):
        assert broker_order_problems(run(grammar, render_bundle(**inputs), "install.ps1")) == []


def test_the_broker_order_check_can_fail(grammar):
    files, engine, source, late = moved_step(
        "    # The broker's boot task, and the broker running: it holds the address before any server registers.\r\n"
        "    Install-BrokerTask\r\n",
        after="    Start-BundleServer\r\n",
    )
    unstopped = source.replace(
        "    if (Test-BrokerRunning) {\r\n", "    Stop-BrokerTask\r\n    if (Test-BrokerRunning) {\r\n"
    )
    unstopped = unstopped.replace("                Restart-BrokerWorker\r\n", "")
    unstopped = unstopped.replace("{ -not (Test-LoggedBroker $_) }", "{ $true }")
    assert unstopped.count("Stop-BrokerTask\r\n    if (Test-BrokerRunning)") == 1
    problems = broker_order_problems(
        run(
            grammar,
            {**files, "install.ps1": late.encode("utf-8-sig"), engine: unstopped.encode("utf-8-sig")},
            "install.ps1",
        )
    )
    assert [p.split(" [")[0] for p in problems] == [
        "in the order",
        "a running broker is stopped for a new file or definition",
        "the broker's worker does not start again from its new file",
        "Restart-BrokerWorker may stop the broker's supervisor",
    ]


def process_problems(root) -> list[str]:
    """Get-BundleProcess drops the broker's processes before it picks launchers and servers (the
    broker's python.exe, from the install folder with --env, would otherwise be stopped as a server),
    and lists them alone with -Broker; the port's preflight takes the broker's listener as this bundle's."""
    problems = []
    text = function(root, "Get-BundleProcess").text.decode()
    dropped = text.find("$all = @($all | Where-Object { -not (Test-BrokerCommandLine $_.CommandLine) })")
    if dropped < 0 or dropped > text.index("$launchers ="):
        problems.append("Get-BundleProcess picks launchers and servers among the broker's processes")
    start = text.find("if ($Broker) {")
    broker = text[start : text.index("$launchers =")] if start >= 0 else ""
    if (
        "$found = @($all | Where-Object { Test-BrokerCommandLine $_.CommandLine })" not in broker
        or "return @($found)" not in broker
    ):
        problems.append("Get-BundleProcess -Broker does not list the broker's processes alone")
    # A broker whose command line an administrator may not read: the supervisor its own log names,
    # started before it said so (not a later process given its id), and what it started.
    if "Where-Object { Test-LoggedBroker $_ }" not in broker:
        problems.append("Get-BundleProcess -Broker misses a broker whose command line Windows does not show")
    logged = function(root, "Test-LoggedBroker").text.decode()
    if (
        "-and $Process.CreationDate.ToUniversalTime() -le $loggedAt" not in logged
        or "Get-ReceiptValue $record 'utc'" not in logged
    ):
        problems.append("Test-LoggedBroker takes a later process given the logged id for the broker")
    if (
        "if (Test-OurBroker -ProcessId $listener.OwningProcess) {"
        not in function(root, "Get-PortProblem").text.decode()
    ):
        problems.append("Get-PortProblem refuses this bundle's own broker")
    # This bundle's broker is python.exe running its file as LOCAL SERVICE: a user can start the first two.
    ours = function(root, "Test-OurBroker").text.decode()
    if "Test-BrokerCommandLine ([string]$process.CommandLine)" not in ours or "$owner.Sid -eq 'S-1-5-19'" not in ours:
        problems.append("Test-OurBroker takes a process any user can start for the broker")
    if (
        "(Test-OurBroker -ProcessId $listeners[0].OwningProcess)"
        not in function(root, "Test-BrokerHolds").text.decode()
    ):
        problems.append("the probe takes any answer at the address as the broker's")
    return problems


def test_the_broker_is_stopped_only_as_the_broker(grammar):
    for script in ("install.ps1", "uninstall.ps1"):
        assert process_problems(run(grammar, render_bundle(), script)) == [], script
    # uninstall.ps1 stops what is left of the broker once its task is gone, and before the files go.
    steps = render_bundle()["uninstall.ps1"].decode("utf-8-sig")
    assert (
        steps.index("Remove-BundleTask")
        < steps.index("@(Get-BundleProcess -Broker)")
        < steps.index("Remove-BundleFiles")
    )


def test_the_process_check_can_fail(grammar):
    source = run(grammar, render_bundle(), "install.ps1").root_node.text.decode()
    planted = source.replace(
        "    $all = @($all | Where-Object { -not (Test-BrokerCommandLine $_.CommandLine) })\r\n", "", 1
    )
    planted = planted.replace("if (Test-OurBroker -ProcessId $listener.OwningProcess) {", "if ($false) {", 1)
    planted = planted.replace(" -and $owner.Sid -eq 'S-1-5-19'", "", 1)
    planted = planted.replace("(Test-OurBroker -ProcessId $listeners[0].OwningProcess)", "$true", 1)
    planted = planted.replace("        return @($found)\r\n", "", 1)
    planted = planted.replace("Where-Object { Test-LoggedBroker $_ }", "Where-Object { $false }", 1)
    planted = planted.replace(" -and $Process.CreationDate.ToUniversalTime() -le $loggedAt.AddSeconds(1)", "", 1)
    assert process_problems(tree(grammar, planted)) == [
        "Get-BundleProcess picks launchers and servers among the broker's processes",
        "Get-BundleProcess -Broker does not list the broker's processes alone",
        "Get-BundleProcess -Broker misses a broker whose command line Windows does not show",
        "Test-LoggedBroker takes a later process given the logged id for the broker",
        "Get-PortProblem refuses this bundle's own broker",
        "Test-OurBroker takes a process any user can start for the broker",
        "the probe takes any answer at the address as the broker's",
    ]


def task_removal_problems(root) -> list[str]:
    """uninstall.ps1 stops and unregisters both tasks (the broker's with its own kind) and deletes the
    task folder only when neither is left in it."""
    text = function(root, "Remove-BundleTask").text.decode()
    problems = []
    if not re.search(r"@\(\$TaskName, 'task-remove'.*@\(\$BrokerTaskName, 'broker-task-remove'", text):
        problems.append("Remove-BundleTask does not remove both tasks")
    if "Where-Object { $gone -notcontains $_.Name }" not in text:
        problems.append("the task folder is judged empty with a task of the bundle still in it")
    stop = text.find("Stop-ScheduledTask -TaskName $name")
    if stop < 0 or stop > text.find("Unregister-ScheduledTask -TaskName $name"):
        problems.append("a task is unregistered before it is stopped")
    return problems


def test_uninstall_removes_both_tasks_then_their_folder(grammar):
    assert task_removal_problems(run(grammar, render_bundle(), "uninstall.ps1")) == []


def test_the_task_removal_check_can_fail(grammar):
    source = run(grammar, render_bundle(), "uninstall.ps1").root_node.text.decode()
    planted = source.replace(", @($BrokerTaskName, 'broker-task-remove',", ", @($TaskName, 'broker-task-remove',")
    planted = planted.replace("Where-Object { $gone -notcontains $_.Name }", "Where-Object { $_.Name -ne $TaskName }")
    stop = "            Stop-ScheduledTask -TaskName $name -TaskPath $TaskFolder -ErrorAction SilentlyContinue\r\n"
    assert stop in planted
    planted = planted.replace(stop, "")
    assert task_removal_problems(tree(grammar, planted)) == [
        "Remove-BundleTask does not remove both tasks",
        "the task folder is judged empty with a task of the bundle still in it",
        "a task is unregistered before it is stopped",
    ]


def test_detect_wants_the_broker_running(grammar):
    text = function(run(grammar, render_bundle(), "detect.ps1"), "Test-Installed").text.decode()
    assert "$broker = @(Get-OurTask -Name $BrokerTaskName)" in text
    assert "-not (Test-TaskValue -Value $broker[0].State -Enum 'State' -Name 'Running')" in text


def cleanup_problems(root, script: str) -> list[str]:
    """Cleanups that could turn a finished run into a failure: the DNS flush after the hosts file is
    written, and each statement of the scripts' final ``finally``, must each be in a try of its own."""
    problems = []
    flush = [n for n in pwsh.walk(function(root, "Clear-NameCache")) if n.type == "command_name"]
    for call in flush:
        if call.text.decode().lower() in ("clear-dnsclientcache", '"$env:systemroot\\system32\\ipconfig.exe"'):
            ancestor = call.parent
            while ancestor is not None and ancestor.type != "try_statement":
                ancestor = ancestor.parent
            if ancestor is None:
                problems.append(f"{call.text.decode()} can fail the run")
    finally_clause = next(n for n in pwsh.walk(root.root_node) if n.type == "finally_clause")
    block = next(c for c in finally_clause.children if c.type == "statement_block")
    statements = [c for c in pwsh.walk(block) if c.type == "statement_list"][0].named_children
    for statement in statements:
        if statement.type != "try_statement":
            problems.append(f"{script}: '{statement.text.decode()[:40]}' in finally is not in a try of its own")
    return problems


@pytest.mark.parametrize("script", ["install.ps1", "uninstall.ps1"])
def test_a_cleanup_that_fails_only_warns(grammar, script):
    assert cleanup_problems(run(grammar, render_bundle(), script), script) == []


def test_the_cleanup_check_can_fail(grammar):
    """0.3.0's shape: the DNS flush under 'Stop', and the finally's two cleanups bare."""
    source = run(grammar, render_bundle(), "install.ps1").root_node.text.decode()
    planted = source.replace(
        "    try {\r\n        if (Get-Command -Name Clear-DnsClientCache",
        "    {\r\n        if (Get-Command -Name Clear-DnsClientCache",
        1,
    )
    planted = planted.replace(
        '    } catch {\r\n        Write-Warning "hosts: the name cache was not cleared',
        '    }\r\n    if ($false) {\r\n        Write-Warning "hosts: the name cache was not cleared',
        1,
    )
    guarded = '    try { Stop-BundleRun -PlanPath $Plan } catch { Write-Warning "cleanup: $($_.Exception.Message)" }'
    assert guarded in planted
    planted = planted.replace(guarded, "    Stop-BundleRun -PlanPath $Plan", 1)
    assert cleanup_problems(tree(grammar, planted), "install.ps1") == [
        "Clear-DnsClientCache can fail the run",
        "install.ps1: 'Stop-BundleRun -PlanPath $Plan' in finally is not in a try of its own",
    ]


def retired_names(engine: str) -> dict[str, bool]:
    """What Remove-EnvironmentFolder renames each folder Get-EnvironmentFolder finds to, as its
    string operations do (TrimStart, Replace), and whether Get-EnvironmentFolder finds that name
    again: a retired folder it cannot delete at once is deleted by a later run only then."""
    pattern = re.search(r"\$_\.Name -cmatch '([^']+)'", engine).group(1)
    expression = re.search(r"\$retired = Join-Path \$InstallDir \((.+)\)\r?\n", engine).group(1)
    assert expression.startswith("'.' + $leaf.TrimStart('.')") and expression.endswith(" + '.remove'"), expression
    replaced = re.findall(r"\.Replace\('([^']*)', '([^']*)'\)", expression)
    names = {}
    for leaf in ("env-0123456789ab", ".env-0123456789ab.partial"):
        name = leaf.lstrip(".")
        for old, new in replaced:
            name = name.replace(old, new)
        names[leaf] = re.fullmatch(pattern, "." + name + ".remove") is not None
    return names


def test_a_retired_environment_folder_is_found_again(canonical_files):
    engine = canonical_files[program.engine_name(canonical_files)].decode("utf-8-sig")
    assert retired_names(engine) == {"env-0123456789ab": True, ".env-0123456789ab.partial": True}


def test_the_retired_name_check_can_fail(canonical_files):
    """0.3.0's shape: .env-<id>.partial retired as .env-<id>.partial.remove, which its pattern missed."""
    engine = canonical_files[program.engine_name(canonical_files)].decode("utf-8-sig")
    old = engine.replace(".Replace('.partial', '')", "", 1).replace("|partial\\.remove))$'", "))$'", 1)
    assert old != engine
    assert retired_names(old) == {"env-0123456789ab": True, ".env-0123456789ab.partial": False}


# ---- no user can block or race a run: %ProgramData%\jupyter, the hosts swap, access denied ----


def jupyter_problems(root) -> list[str]:
    """%ProgramData%\\jupyter settled before either task is registered, judged at that step (a user
    may make it after the preflight): one a user made is renamed aside, under its own
    Confirm-Change, and is no preflight refusal (Get-SafetyProblem); it is never taken over."""
    from test_install_hardening import main_body

    problems = []
    body = main_body(root)
    created = next(
        (n.start_byte for name, n in body if name == "new-adminonlyfolder" and "$JupyterShared" in n.text.decode()),
        None,
    )
    registered = next((n.start_byte for name, n in body if name == "register-scheduledtask"), None)
    if created is None or registered is None or created > registered:
        problems.append("a task is registered before %ProgramData%\\jupyter is settled")
    step = function(root, "Install-JupyterShared")
    moves = [
        n
        for n in pwsh.walk(step)
        if n.type == "invocation_expression"
        and n.text.decode().startswith(("[IO.Directory]::Move(", "[IO.File]::Move("))
    ]
    judged = calls_of(step, "Get-UserMadeReason")
    asked = any("-Kind 'jupyter-aside'" in n.text.decode() for n in calls_of(step, "Confirm-Change"))
    if not judged or not moves or not asked or not all(pwsh._guarded(n) for n in moves):
        problems.append("Install-JupyterShared does not rename a user's folder aside, asked first")
    for node in calls_of(function(root, "Get-SafetyProblem"), "Get-AdminOnlyProblem"):
        if "$JupyterShared" not in node.text.decode():
            continue
        ancestor = node.parent
        while ancestor is not None and ancestor.type != "if_statement":
            ancestor = ancestor.parent
        if ancestor is None or "Get-UserMadeReason" not in ancestor.children[2].text.decode():
            problems.append("the preflight refuses a %ProgramData%\\jupyter that a user made")
    return problems


def test_programdata_jupyter_is_settled_before_any_task(grammar):
    for inputs in ({}, USER):
        assert jupyter_problems(run(grammar, render_bundle(**inputs), "install.ps1")) == []


def test_the_jupyter_settling_check_can_fail(grammar):
    """0.3.2's shape: the folder made after the logon task, a user's folder refused by the
    preflight (every run then exits 4 while the task runs), and the step taking what is there."""
    files, engine, source, late = moved_step(
        "    # %ProgramData%\\jupyter owned by administrators before either task can start a server "
        "(one a user made is renamed aside).\r\n    Install-JupyterShared\r\n",
        after="    Install-BundleTask\r\n",
    )
    old = source.replace(
        "if ((Test-Entry $JupyterShared) -and -not (Get-UserMadeReason $JupyterShared)) {",
        "if (Test-Entry $JupyterShared) {",
    )
    start = old.index("function Install-JupyterShared {")
    aside = old.index("    $acl = Format-FolderSecurity (New-AdminOnlySecurity -UsersRead)", start)
    old = (
        old[:start]
        + "function Install-JupyterShared {\r\n    if (Test-Entry $JupyterShared) {\r\n        return\r\n    }\r\n"
        + old[aside:]
    )
    problems = jupyter_problems(
        run(
            grammar,
            {**files, "install.ps1": ("\ufeff" + late).encode(), engine: ("\ufeff" + old).encode()},
            "install.ps1",
        )
    )
    assert problems == [
        "a task is registered before %ProgramData%\\jupyter is settled",
        "Install-JupyterShared does not rename a user's folder aside, asked first",
        "the preflight refuses a %ProgramData%\\jupyter that a user made",
    ]


def hosts_swap_problems(root) -> list[str]:
    """Write-HostsFile reads hosts again after writing the new file and before swapping it in, and
    starts over when it changed: a VPN client's lines written meanwhile are kept."""
    text = function(root, "Write-HostsFile").text.decode()
    written = text.find("[IO.File]::WriteAllBytes($temp")
    reread = text.find("(Read-HostsText)", written)
    swapped = text.find("[IO.File]::Replace(")
    if written < 0 or swapped < 0 or not written < reread < swapped:
        return ["hosts is not read again between writing the new file and the swap"]
    return []


def test_hosts_is_read_again_just_before_the_swap(grammar):
    assert hosts_swap_problems(run(grammar, render_bundle(), "install.ps1")) == []


def test_the_hosts_swap_check_can_fail(grammar):
    source = run(grammar, render_bundle(), "install.ps1").root_node.text.decode()
    line = "            if (-not [string]::Equals((Read-HostsText), $old, [StringComparison]::Ordinal)) {\r\n"
    assert line in source
    old = source.replace(line, "            if ($false) {\r\n")
    assert hosts_swap_problems(tree(grammar, old)) == [
        "hosts is not read again between writing the new file and the swap"
    ]


def denied_entry_answer(root) -> str | None:
    """What Test-Entry answers when GetAttributes is denied (a path below an admin-only folder, in a
    -WhatIf run that is not elevated): 'there', or None when the denial escapes (exit 1603)."""
    for clause in pwsh.walk(function(root, "Test-Entry")):
        if clause.type == "catch_clause" and "[UnauthorizedAccessException]" in clause.text.decode():
            returns = [n.text.decode() for n in pwsh.walk(clause) if n.type == "flow_control_statement"]
            return "there" if returns == ["return $true"] else None
    return None


def test_access_denied_is_not_missing(grammar):
    assert denied_entry_answer(run(grammar, render_bundle(), "install.ps1")) == "there"


def test_the_access_denied_check_can_fail(grammar):
    """0.2.3's Test-Entry, which caught only the not-found exceptions."""
    old = (
        "function Test-Entry {\r\n    param([string]$Path)\r\n    try {\r\n        [void][IO.File]::GetAttributes($Path)\r\n"
        "        return $true\r\n    } catch [IO.FileNotFoundException] {\r\n        return $false\r\n"
        "    } catch [IO.DirectoryNotFoundException] {\r\n        return $false\r\n    }\r\n}\r\n"
    )
    assert denied_entry_answer(tree(grammar, old)) is None


# ---- a failed check on an installed PC makes it safe, under every channel ----------------------


def fail_safe_problems(install, detect) -> list[str]:
    """A failed security check where the bundle is installed disables what it protects: install.ps1's
    preflight then calls Disable-UnsafeBundle (both tasks disabled, the bundle's processes stopped,
    the receipt marked) and exits $ExitUnsafe, not "nothing changed"; detect.ps1 runs the same
    checks (Get-SafetyProblem) and answers "not installed" while one fails or the receipt holds a
    check's disable, before it would take a disabled task for an administrator's; both read the
    policy value before any check."""
    problems = []

    def text_of(root, name: str) -> str:
        try:
            return function(root, name).text.decode()
        except StopIteration:
            return ""

    preflight = text_of(install, "Test-InstallPreflight")
    if "Get-SafetyProblem" not in preflight:
        problems.append("install.ps1's preflight does not run the safety checks")
    if not re.search(
        r"Disable-UnsafeBundle -Problem \$unsafe\r\n(?:[^\r\n]*\$done = [^\r\n]*\r\n)?\s+Stop-Bundle \$ExitUnsafe ",
        preflight,
    ):
        problems.append("a failed safety check on an installed PC does not disable the bundle")
    disable, stop = text_of(install, "Disable-UnsafeBundle"), text_of(install, "Disable-BundleRun")
    marked, disabled = disable.find("Write-ReceiptMark -Name 'disabledByCheck'"), disable.find("Disable-BundleRun")
    if marked < 0 or disabled < 0 or marked > disabled:  # first: a disable that fails half-way is still the tool's
        problems.append("the disable is not marked in the receipt")
    if not all(
        part in stop
        for part in (
            "@($TaskName, $BrokerTaskName)",
            "Disable-ScheduledTask",
            "Stop-BundleProcess",
            "Remove-StartMenuEntry",
        )
    ):
        problems.append("not both tasks disabled, the processes stopped and the Start-menu entry deleted")
    if not re.search(r"try \{\s+\$safety = @\(Get-SafetyProblem [^\r\n]*\)\s+\} catch \{\s+\$safety = @\(", preflight):
        problems.append("security checks that cannot finish do not count as failed")
    installed = text_of(detect, "Test-Installed")
    if not re.search(
        r"\$safety = @\(Get-SafetyProblem [^\n]*\)\s+if \(\$safety\.Count -gt 0\) \{.*?return \$false",
        installed,
        re.DOTALL,
    ):
        problems.append("detect.ps1 does not run the safety checks")
    marked, admin = installed.find("'disabledByCheck') -or"), installed.find("Test-TaskDisabledByAdmin")
    if (
        marked < 0
        or admin < 0
        or marked > admin
        or not installed[marked:admin].split("}")[0].strip().endswith("return $false")
    ):
        problems.append("detect.ps1 takes a check's disable for an administrator's")
    for script, text in (("install.ps1", preflight), ("detect.ps1", installed)):
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        checked, kept = body.find("Get-SafetyProblem"), body.find("Test-TaskDisabledByAdmin")
        if checked < 0 or kept < 0 or checked > kept:
            problems.append(
                f"{script} may take a disabled task for an administrator's choice before the security checks"
            )
        off = body.find("if (Test-BundleOff) {")
        checks = [
            at for at in (body.find(c) for c in ("Get-OurTask", "Read-HostsText", "Get-SafetyProblem")) if at >= 0
        ]
        if off < 0 or (checks and off > min(checks)):
            problems.append(f"{script} does not read the policy value before any check")
    return problems


def test_a_failed_check_on_an_installed_pc_disables_the_bundle(grammar):
    for inputs in ({}, USER):
        files = render_bundle(**inputs)
        assert fail_safe_problems(run(grammar, files, "install.ps1"), run(grammar, files, "detect.ps1")) == []


def test_the_fail_safe_check_can_fail(grammar):
    """0.3.3's shape: every failed check ends with exit 4 and changes nothing, the tasks keep
    running; detect.ps1 checks only that the parts are in place."""
    install = (
        "function Test-InstallPreflight {\r\n    param([switch]$Force)\r\n    $problems = @()\r\n"
        "    if ((Test-TaskDisabledByAdmin $task) -and -not $Force) {\r\n        Stop-Bundle 0 'disabled'\r\n    }\r\n"
        "    $problems += @(Get-PythonTreeProblem)\r\n    if ($problems.Count -gt 0) {\r\n"
        "        Stop-Bundle $ExitPreflight 'a check before any change failed (above). Nothing was changed.'\r\n    }\r\n}\r\n"
    )
    detect = (
        "function Test-Installed {\r\n    $task = @(Get-OurTask)\r\n"
        "    if ($task.Count -gt 0 -and (Test-TaskDisabledByAdmin $task[0])) {\r\n        return $true\r\n    }\r\n"
        "    return $true\r\n}\r\n"
    )
    assert fail_safe_problems(tree(grammar, install), tree(grammar, detect)) == [
        "install.ps1's preflight does not run the safety checks",
        "a failed safety check on an installed PC does not disable the bundle",
        "the disable is not marked in the receipt",
        "not both tasks disabled, the processes stopped and the Start-menu entry deleted",
        "security checks that cannot finish do not count as failed",
        "detect.ps1 does not run the safety checks",
        "detect.ps1 takes a check's disable for an administrator's",
        "install.ps1 may take a disabled task for an administrator's choice before the security checks",
        "install.ps1 does not read the policy value before any check",
        "detect.ps1 may take a disabled task for an administrator's choice before the security checks",
        "detect.ps1 does not read the policy value before any check",
    ]


def byte_diff_problems(root) -> list[str]:
    """Get-ByteDiff finds the common start and end without a PowerShell loop over characters
    (``$Before[$i]`` in a while: seconds on a hosts file of megabytes)."""
    body = function(root, "Get-ByteDiff")
    for loop in pwsh.walk(body):
        if loop.type == "while_statement" and any(n.type == "element_access" for n in pwsh.walk(loop)):
            return [f"Get-ByteDiff compares a character at a time: {loop.text.decode().splitlines()[0]}"]
    return []


def test_the_byte_diff_does_not_walk_characters(grammar):
    assert byte_diff_problems(run(grammar, render_bundle(), "install.ps1")) == []


def test_the_byte_diff_check_can_fail(grammar):
    """0.3.3's Get-ByteDiff."""
    old = (
        "function Get-ByteDiff {\r\n    param([string]$Before, [string]$After)\r\n    $start = 0\r\n"
        "    $shorter = [Math]::Min($Before.Length, $After.Length)\r\n"
        "    while ($start -lt $shorter -and [int]$Before[$start] -eq [int]$After[$start]) {\r\n        $start++\r\n    }\r\n}\r\n"
    )
    assert byte_diff_problems(tree(grammar, old)) == [
        "Get-ByteDiff compares a character at a time: while ($start -lt $shorter -and [int]$Before[$start] -eq [int]$After[$start]) {"
    ]


def link_read_problems(root) -> list[str]:
    """Write-ServerReport reads a user's launcher.log as SYSTEM only after Test-ReadThroughLink said
    no level of it below the profile is a link, and that function looks at every such level."""
    report = function(root, "Write-ServerReport").text.decode()
    checked, read = report.find("Test-ReadThroughLink -Path $log"), report.find("Get-Content -LiteralPath $log")
    problems = []
    if checked < 0 or read < 0 or checked > read:
        problems.append("a user's log is read as SYSTEM without looking for a link on its way")
    try:
        walker = function(root, "Test-ReadThroughLink").text.decode()
    except StopIteration:
        walker = ""
    if "[IO.FileAttributes]::ReparsePoint" not in walker or "Split-Path -Parent $level" not in walker:
        problems.append("not every level below the profile is looked at")
    if not re.search(r"\} catch \[UnauthorizedAccessException\] \{\s+return \$true", walker):
        problems.append("a level the user shut SYSTEM out of ends the run instead of not being read")
    return problems


def test_system_reads_no_users_log_through_a_link(grammar):
    assert link_read_problems(run(grammar, render_bundle(), "install.ps1")) == []


def test_the_link_read_check_can_fail(grammar):
    """0.3.3's Write-ServerReport."""
    old = (
        "function Write-ServerReport {\r\n    param([object[]]$User)\r\n    foreach ($account in $User) {\r\n"
        "        $log = Get-LauncherLog -Sid $account.Sid\r\n"
        "        foreach ($line in @(Get-Content -LiteralPath $log -Tail $LogTailLines -Encoding UTF8)) {\r\n"
        '            Write-Output "    $line"\r\n        }\r\n    }\r\n}\r\n'
    )
    assert link_read_problems(tree(grammar, old)) == [
        "a user's log is read as SYSTEM without looking for a link on its way",
        "not every level below the profile is looked at",
        "a level the user shut SYSTEM out of ends the run instead of not being read",
    ]


def event_problems(root) -> list[str]:
    """Each run's outcome goes to the Application event log at its end (Stop-BundleRun), best
    effort: every write in a try whose catch only warns, nothing written under -WhatIf, and the
    event ID from the exit code the script's catch resolved."""
    problems = []
    if "Write-RunEvent" not in function(root, "Stop-BundleRun").text.decode():
        problems.append("Stop-BundleRun writes no event")
    try:
        writer = function(root, "Write-RunEvent")
    except StopIteration:
        return problems + ["no Write-RunEvent"]
    text = writer.text.decode()
    for call in pwsh.walk(writer):
        if call.type != "invocation_expression" or not call.text.decode().startswith("[Diagnostics.EventLog]::"):
            continue
        handlers, ancestor = [], call.parent
        while ancestor is not None:  # every try around it: one must catch all and only warn
            if ancestor.type == "try_statement":
                handlers += [c.text.decode() for c in pwsh.walk(ancestor) if c.type == "catch_clause"]
            ancestor = ancestor.parent
        if not any(h.startswith("catch {") and "Write-Warning" in h and "throw" not in h for h in handlers):
            problems.append(f"{call.text.decode()[:50]} can change the exit code")
    whatif, first = text.find("if ($WhatIfPreference)"), text.find("[Diagnostics.EventLog]::")
    if whatif < 0 or first < 0 or whatif > first:
        problems.append("-WhatIf would write an event")
    if "$Run.ExitCode = $code" not in function(root, "Resolve-BundleFailure").text.decode():
        problems.append("the event does not know the exit code")
    return problems


def test_each_run_writes_its_outcome_to_the_event_log(grammar):
    for script in ("install.ps1", "uninstall.ps1"):
        assert event_problems(run(grammar, render_bundle(), script)) == []


def test_the_event_check_can_fail(grammar):
    old = (
        "function Stop-BundleRun {\r\n    Write-RunEvent\r\n}\r\nfunction Resolve-BundleFailure {\r\n    return 1\r\n}\r\n"
        "function Write-RunEvent {\r\n"
        "    [Diagnostics.EventLog]::WriteEntry($EventSource, 'done', 'Information', 1000)\r\n"
        "    if ($WhatIfPreference) {\r\n        return\r\n    }\r\n}\r\n"
    )
    assert event_problems(tree(grammar, old)) == [
        "[Diagnostics.EventLog]::WriteEntry($EventSource, ' can change the exit code",
        "-WhatIf would write an event",
        "the event does not know the exit code",
    ]


def broker_left_down_problems(root) -> list[str]:
    """A step that stopped the broker (Stop-BrokerForChange marks it) and then failed must not
    leave it down, or any account could take the address meanwhile: install.ps1's finally runs
    Stop-BundleRun, which first starts a broker the run stopped and did not start again."""
    stopper = function(root, "Stop-BrokerForChange").text.decode()
    starter = function(root, "Start-StoppedBroker").text.decode()
    end = function(root, "Stop-BundleRun").text.decode()
    if (
        "$Run.BrokerStopped = $true" not in stopper
        or "$Run.BrokerStopped -and -not (Test-BrokerRunning)" not in starter
        or "Start-ScheduledTask -TaskName $BrokerTaskName" not in starter
        or not 0 <= end.find("Start-StoppedBroker") < end.find("Write-RunEvent")
    ):
        return ["a failed run leaves the broker stopped"]
    return []


def test_a_failed_run_does_not_leave_the_broker_down(grammar):
    assert broker_left_down_problems(run(grammar, render_bundle(), "install.ps1")) == []
    # install.ps1's finally runs it, whatever failed.
    assert "finally {\r\n" in render_bundle()["install.ps1"].decode("utf-8-sig").split("Start-BundleServer\r\n", 1)[1]


def test_the_broker_down_check_can_fail(grammar):
    """The run's end without the restart: a broker the environment's repair stopped stays down."""
    source = run(grammar, render_bundle(), "install.ps1").root_node.text.decode()
    planted = source.replace(
        "    try {\r\n        Start-StoppedBroker\r\n    } catch {", "    try {\r\n    } catch {", 1
    )
    assert planted != source
    assert broker_left_down_problems(tree(grammar, planted)) == ["a failed run leaves the broker stopped"]


def environment_repair_problems(root) -> list[str]:
    """A damaged environment that the servers or the broker still run from is extracted again: they
    are stopped first (Windows refuses to rename a folder a program runs from); nothing resets the
    mark that the broker was stopped, which Stop-BundleRun reads when the run fails
    (broker_left_down_problems)."""
    problems = []
    text = function(root, "Install-BundleEnvironment").text.decode()
    used = text.find("if (@(Get-EnvironmentUser -Path $envPath).Count -gt 0) {")
    extract = text.find("$extracted = Install-Environment -Archive $Run.Files[$EnvArchive]")
    stops = [text.find("Stop-BundleProcess -Process @(Get-BundleProcess)"), text.find("Stop-BrokerForChange ")]
    if used < 0 or extract < 0 or not all(used < stop < extract for stop in stops):
        problems.append("a damaged environment in use is not freed before it is extracted again")
    resets = [
        name
        for name in ("Install-BundleFiles", "Install-BundleEnvironment", "Install-HostsBlock")
        if "$Run.BrokerStopped = $false" in function(root, name).text.decode()
    ]
    if resets:
        problems.append(f"{', '.join(resets)} forgets that the broker was stopped")
    return problems


def test_a_damaged_environment_in_use_is_repaired(grammar):
    assert environment_repair_problems(run(grammar, render_bundle(), "install.ps1")) == []


def test_the_environment_repair_check_can_fail(grammar):
    source = run(grammar, render_bundle(), "install.ps1").root_node.text.decode()
    planted = source.replace(
        '            Stop-BrokerForChange "while $envPath', '            Write-Output "while $envPath', 1
    )
    planted = planted.replace(
        "    foreach ($file in $InstalledFiles) {",
        "    $Run.BrokerStopped = $false\r\n    foreach ($file in $InstalledFiles) {",
    )
    assert environment_repair_problems(tree(grammar, planted)) == [
        "a damaged environment in use is not freed before it is extracted again",
        "Install-BundleFiles forgets that the broker was stopped",
    ]


def fail_open_problems(root) -> list[str]:
    """Checks that a user could shut out or trip at will (a second review of 0.3.11): the Python
    tree's paths are judged when they may not be read (Test-Path says "missing" for those, and the
    checks were skipped); another listener beside a broker that holds the address is a warning, not
    a refusal at every run; a 0.3.10 broker, which logs no UTC time, is still recognised."""
    problems = []
    safety = function(root, "Get-SafetyProblem").text.decode()
    if "if (Test-Entry $PythonExe) {" not in safety:
        problems.append("Get-SafetyProblem skips a Python it may not read")
    if "Test-Path" in function(root, "Get-PythonTreeProblem").text.decode():
        problems.append("Get-PythonTreeProblem skips a path it may not read")
    ports = function(root, "Get-PortProblem").text.decode()
    if (
        "if ($held -and @('0.0.0.0', '::') -contains $listener.LocalAddress) {\r\n            Write-Warning "
        not in ports
        or "-and (Test-OurBroker -ProcessId $_.OwningProcess) }).Count -gt 0" not in ports
    ):
        problems.append("a listener any account can make beside the broker fails every run")
    if (
        "$held = -not $repair -and " not in ports
        or "$repair = $EnvFolder -and -not $Run.InPlace -and (Test-Entry (Join-Path $InstallDir $EnvFolder))"
        not in ports
    ):
        problems.append("a listener beside the broker passes though this run stops the broker")
    if "$loggedAt = Get-ReceiptValue $record 'time'" not in function(root, "Test-LoggedBroker").text.decode():
        problems.append("a broker of 0.3.10 is not recognised by its log")
    return problems


def test_no_check_fails_open_or_can_be_tripped_by_a_user(grammar):
    assert fail_open_problems(run(grammar, render_bundle(), "install.ps1")) == []


def test_the_fail_open_check_can_fail(grammar):
    source = run(grammar, render_bundle(), "install.ps1").root_node.text.decode()
    planted = source.replace("if (Test-Entry $PythonExe) {", "if (Test-Path -LiteralPath $PythonExe -PathType Leaf) {")
    planted = planted.replace("if (Test-Entry $tree) {", "if (Test-Path -LiteralPath $tree -PathType Container) {")
    planted = planted.replace(
        "if ($held -and @('0.0.0.0', '::') -contains $listener.LocalAddress) {\r\n            Write-Warning ",
        "if ($false) {\r\n            Write-Warning ",
    )
    planted = planted.replace("$held = -not $repair -and ", "$held = ")
    planted = planted.replace("$loggedAt = Get-ReceiptValue $record 'time'", "$loggedAt = $null")
    assert fail_open_problems(tree(grammar, planted)) == [
        "Get-SafetyProblem skips a Python it may not read",
        "Get-PythonTreeProblem skips a path it may not read",
        "a listener any account can make beside the broker fails every run",
        "a listener beside the broker passes though this run stops the broker",
        "a broker of 0.3.10 is not recognised by its log",
    ]
