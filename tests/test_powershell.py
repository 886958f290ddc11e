"""install.ps1, uninstall.ps1 and detect.ps1 read by two PowerShell grammars; the Pester suites
and the Windows workflow read against the scripts they test."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.layout import Layout
from generator.spec import build_spec

from conftest import REPO, SHARED
from support import program, pscommands, pwsh

SCRIPTS = ["install.ps1", "uninstall.ps1"]


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
    engine = pwsh.assignments(
        grammars["tree-sitter-pwsh"].parse(pwsh.script_text(canonical_files[program.engine_name(canonical_files)]))
    )
    assert engine["TaskFolder"] == "\\gen-bundle\\"  # the same in every bundle: the engine's
    assert values["InstallDir"] == ("ProgramFiles", "gen-bundle\\py")
    assert values["HostsBegin"] == "# BEGIN gen-bundle py"
    assert values["HostsEnd"] == "# END gen-bundle py"


def test_install_knows_the_python_and_the_files_it_verifies(canonical_files, grammars):
    values = pwsh.assignments(grammars["tree-sitter-pwsh"].parse(pwsh.script_text(canonical_files["install.ps1"])))
    # The Start-menu entry's arguments: the same line the launcher test runs under wine.
    shortcut = Layout(build_spec(ip="127.0.0.13", name="py")).shortcut_arguments
    assert values["ShortcutArguments"] == shortcut == "/d /c .\\start-py.bat open"
    assert values["PythonExe"] == ("ProgramFiles", "Python313\\python.exe")
    array = grammars["tree-sitter-pwsh"].parse(values["BundleFiles"].encode())
    strings = [n for n in pwsh.walk(array.root_node) if n.type == "verbatim_string_characters"]
    listed = [pwsh.decode_verbatim(n.text.decode()) for n in strings]
    assert sorted(listed) == sorted(set(canonical_files) - {"SHA256SUMS"})  # every file, once, and no other


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
SCOPES = [{}, {"scope": "user", "user": "CONTOSO\\alice"}, {"python": "D:\\Py 3 & Co\\python.exe"}]


from conftest import render_bundle as bundle  # noqa: E402


@pytest.mark.parametrize("inputs", SCOPES, ids=["machine", "user", "spaced-python"])
@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_every_variant_parses_in_both_grammars(grammars, inputs, script):
    source = pwsh.script_text(bundle(**inputs)[script])
    for name, parser in grammars.items():
        tree = parser.parse(source)
        assert pwsh.problems(tree) == [], f"{name}: {script}"
    assert pwsh.ps7_only(grammars["tree-sitter-pwsh"].parse(source)) == []


@pytest.mark.parametrize("inputs", SCOPES, ids=["machine", "user", "spaced-python"])
@pytest.mark.parametrize("script", ["install.ps1", "uninstall.ps1"])
def test_every_state_change_sits_under_should_process(grammars, inputs, script):
    """In the script as it runs (its steps with the engine's functions in place): every change
    is asked first, through the engine's Confirm-Change, of the script's ShouldProcess."""
    parser = grammars["tree-sitter-pwsh"]
    tree = parser.parse(program.inlined(bundle(**inputs), script, parser))
    assert pwsh.unguarded_changes(tree) == []


def test_detect_changes_nothing_at_all(grammars):
    """detect.ps1, and every engine function it runs, change nothing."""
    parser = grammars["tree-sitter-pwsh"]
    files = bundle()
    tree = parser.parse(pwsh.script_text(files["detect.ps1"]))
    assert [n.text.decode()[:60] for n in pwsh.walk(tree.root_node) if pwsh._changes_state(n)] == []
    engine = parser.parse(pwsh.script_text(files[program.engine_name(files)]))
    functions = program.engine_functions(engine)
    todo, seen = ["write-bundledetected"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        body = functions[name]
        assert [n.text.decode()[:60] for n in pwsh.walk(body) if pwsh._changes_state(n)] == [], name
        todo += [
            pwsh._command_name(n) for n in pwsh.walk(body) if n.type == "command" and pwsh._command_name(n) in functions
        ]
    assert {"test-installed", "read-verifiedbundle", "read-hoststext"} <= seen


def test_the_should_process_check_can_fail(grammars):
    parser = grammars["tree-sitter-pwsh"]
    bad = parser.parse(
        b"function Save-It {\r\n    Copy-Item -LiteralPath a -Destination b\r\n}\r\n"
        b"if ($PSCmdlet.ShouldProcess('x', 'y')) { Remove-Item -LiteralPath c }\r\n"
        b"Save-It\r\n"
        b"[IO.File]::WriteAllBytes($p, $b)\r\n"
        b"if ($x) { Stop-Process -Id 1 } elseif ($PSCmdlet.ShouldProcess('p', 'q')) { Stop-Process -Id 2 }\r\n"
        b"$s = [IO.File]::Create($p)\r\n"
        b"$s = [IO.File]::Open($p, [IO.FileMode]::Append, [IO.FileAccess]::Write)\r\n"
        b"$s = [IO.File]::Open($p, [IO.FileMode]::Open, [IO.FileAccess]::Read)\r\n"
        b"[Diagnostics.EventLog]::WriteEntry('gen-bundle', 'x', 'Information', 1000)\r\n"
    )
    found = pwsh.unguarded_changes(bad)
    assert [line.split(":")[0] for line in found] == ["line 5", "line 6", "line 7", "line 8", "line 9", "line 11"], (
        found
    )
    # The engine's guard, Confirm-Change, counts only where the block cannot run without its yes.
    shapes = parser.parse(
        b"if ($a -and (Confirm-Change -Kind 'k')) { Remove-Item -LiteralPath a }\r\n"
        b"if (Confirm-Change -Kind 'k') { Remove-Item -LiteralPath b }\r\n"
        b"if ((Confirm-Change -Kind 'k') -or $Force) { Remove-Item -LiteralPath c }\r\n"
        b"if (-not (Confirm-Change -Kind 'k')) { Remove-Item -LiteralPath d }\r\n"
        b"if (!(Confirm-Change -Kind 'k')) { Remove-Item -LiteralPath e }\r\n"
        b"if ($PSCmdlet.ShouldProcess('x', 'y') -eq $false) { Remove-Item -LiteralPath f }\r\n"
        b"Remove-Item -LiteralPath $engineFolderX\r\n"
        b"Remove-Item -LiteralPath $engineFolder\r\n"
    )
    found = pwsh.unguarded_changes(shapes)
    assert [line.split(":")[0] for line in found] == ["line 3", "line 4", "line 5", "line 6", "line 7"], found


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
    values = pwsh.assignments(tree)  # the check saw the values it looks for
    assert values["BundleName"] == "zqxwvname"
    assert values["BundleIp"] == "127.99.88.77"  # detect.ps1's too: is the broker what listens there?
    if script == "detect.ps1":
        assert "ExpectedHostsLines" in values


def test_the_literal_check_can_fail(grammars):
    tree = grammars["tree-sitter-pwsh"].parse(b"$a = 'zqxwvname'\r\n$b = \"zqxwvname\"\r\nWrite-Output zqxwvname\r\n")
    assert len(pwsh.literal_violations(tree, ["zqxwvname"])) == 2


PESTER_DIR = Path(__file__).parent / "pester"
# Named, not globbed: a suite that goes missing fails to parse below; a new one is parsed too.
PESTER = sorted({"Hosts.Tests.ps1", "Install.Tests.ps1"} | {p.name for p in PESTER_DIR.glob("*.Tests.ps1")})


@pytest.mark.parametrize("name", PESTER)
def test_pester_tests_parse_for_windows_powershell(grammars, name):
    source = (PESTER_DIR / name).read_bytes()
    assert source.isascii()
    for grammar, parser in grammars.items():
        tree = parser.parse(source)
        assert pwsh.problems(tree) == [], grammar
    assert pwsh.ps7_only(grammars["tree-sitter-pwsh"].parse(source)) == []


# --- Hosts.Tests.ps1 against the install.ps1 it dot-sources ---------------------------
#
# The suite loads install.ps1's functions and stands in for the script-level variables
# they read. On Linux it cannot run, so these checks read both parse trees: a function
# renamed, a parameter dropped, a variable added or a marker changed in install.ps1
# fails here instead of on the Windows runner.

# Commands of PowerShell and Pester that the Hosts suite may call besides install.ps1's functions.
BUILTIN_COMMANDS = frozenset(
    {
        "describe",
        "context",
        "it",
        "beforeall",
        "beforeeach",
        "aftereach",
        "afterall",
        "should",
        "mock",
        "join-path",
        "split-path",
        "get-childitem",
        "remove-item",
        "foreach-object",
        "where-object",
        "out-null",
        "test-path",
        "get-content",
        "set-content",
        "new-item",
        "write-output",
        "write-verbose",
        "start-sleep",
        "sort-object",
        "get-ciminstance",
        "start-process",
        "stop-process",
        "set-itresult",
    }
)
AUTOMATIC_VARIABLES = frozenset(
    {
        "_",
        "psitem",
        "true",
        "false",
        "null",
        "args",
        "input",
        "this",
        "matches",
        "lastexitcode",
        "error",
        "pscmdlet",
        "psboundparameters",
        "myinvocation",
        "psscriptroot",
        "pscommandpath",
        "pid",
        "home",
        "host",
        "pwd",
        "erroractionpreference",
        "verbosepreference",
        "warningpreference",
        "whatifpreference",
        "confirmpreference",
        "psversiontable",
        "executioncontext",
        "ofs",
        "foreach",
        "switch",
        "iswindows",
    }
)
# The hosts-file shapes a hosts file is known to take: each must be made by Get-Shape and fed to a test.
HOSTS_SHAPES = {"utf8-bom", "utf8", "ansi", "lf", "crlf", "no-final-newline", "old-block", "foreign"}


def tree_of(grammars, data: bytes):
    return grammars["tree-sitter-pwsh"].parse(pwsh.script_text(data))


def functions(node, *, top_level: bool) -> dict:
    """Function definitions by lower-case name (the first one of each name)."""
    found = {}
    for n in pwsh.walk(node):
        if n.type == "function_statement" and (not top_level or pwsh._enclosing_function(n) is None):
            name = next(c for c in n.children if c.type == "function_name").text.decode().lower()
            found.setdefault(name, n)
    return found


def variable_name(node) -> str:
    """``$script:Name``, ``${Name}`` and ``$Name`` alike, lower case, without the sigil."""
    name = node.text.decode()[1:].lower()
    if name.startswith("{") and name.endswith("}"):
        name = name[1:-1]
    return name.split(":", 1)[1] if name.startswith(("script:", "global:", "local:")) else name


def parameters(function) -> set[str]:
    return {
        variable_name(v)
        for n in pwsh.walk(function)
        if n.type == "script_parameter"
        for v in n.children
        if v.type == "variable"
    }


def arguments(command) -> list[tuple[str | None, object]]:
    """(parameter, value node) pairs: a switch has value None, a positional argument parameter None."""
    elements = next((c for c in command.children if c.type == "command_elements"), None)
    items = [c for c in elements.children if c.type != "command_argument_sep"] if elements else []
    pairs, i = [], 0
    while i < len(items):
        if items[i].type == "command_parameter":
            value = items[i + 1] if i + 1 < len(items) and items[i + 1].type != "command_parameter" else None
            pairs.append((items[i].text.decode().lstrip("-").rstrip(":").lower(), value))
            i += 2 if value is not None else 1
        else:
            pairs.append((None, items[i]))
            i += 1
    return pairs


def literal(node) -> str:
    """A single-quoted literal's value; any other node's source text."""
    strings = [n for n in pwsh.walk(node) if n.type == "verbatim_string_characters"]
    if len(strings) == 1 and node.text.decode().strip() == strings[0].text.decode():
        return pwsh.decode_verbatim(strings[0].text.decode())
    return node.text.decode().strip()


def commands(node) -> list:
    return [n for n in pwsh.walk(node) if n.type == "command"]


def reachable(library: dict, called: set[str], overridden: set[str]) -> set[str]:
    """The library's functions that ``called`` runs, directly or through each other."""
    seen, todo = set(), [c for c in called if c in library and c not in overridden]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [
                c
                for c in map(pwsh._command_name, commands(library[name]))
                if c in library and c not in overridden and c not in seen
            ]
    return seen


def free_variables(function) -> set[str]:
    """Variables a function reads but neither declares, assigns nor gets from PowerShell."""
    used, bound = set(), parameters(function)
    for n in pwsh.walk(function):
        if n.type != "variable" or n.text.decode().lower().startswith("$env:"):
            continue
        name = variable_name(n)
        parent = n.parent
        while parent is not None and parent.type in ("unary_expression", "array_literal_expression"):
            parent = parent.parent
        if parent is not None and (parent.type == "left_assignment_expression" or parent.type == "foreach_statement"):
            bound.add(name)
        else:
            used.add(name)
    return used - bound - AUTOMATIC_VARIABLES


def script_assignments(tree) -> dict[str, object]:
    """Every ``$Name = value`` / ``$script:Name = value`` of a file: name -> value node (first one)."""
    found = {}
    for n in pwsh.walk(tree.root_node):
        if n.type == "assignment_expression":
            left = n.children[0]
            variables = [v for v in pwsh.walk(left) if v.type == "variable"]
            if len(variables) == 1 and not variables[0].text.decode().lower().startswith("$env:"):
                found.setdefault(variable_name(variables[0]), n.children[-1])
    return found


LOADER = PESTER_DIR / "Engine.ps1"
REFERENCE = SHARED / "reference" / "powershell" / "cmdlets.json"


def given_values(suite) -> dict[str, object]:
    """The engine's values a suite sets: the keys of each ``-Values @{ ... }`` it hands the engine."""
    found = {}
    for command in commands(suite.root_node):
        if pwsh._command_name(command) in ("initialize-genbundle", "import-testengine"):
            for parameter, value in arguments(command):
                if parameter == "values" and value is not None:
                    for entry in (n for n in pwsh.walk(value) if n.type == "hash_entry"):
                        found.setdefault(entry.children[0].text.decode().lower(), entry)
    return found


def suite_problems(suite, engine, script) -> list[str]:
    """What would break the suite on Windows, or make it test something the engine no longer is.
    The suite loads the engine as the bundle's scripts do (Engine.ps1: the values of ``script``,
    then its own): every function it calls is the engine's, with the parameters it declares; every
    variable those functions read is the engine's own, one of the script's values, or one the
    suite gives; and every value the suite gives is one an engine function reads."""
    problems = []
    library = functions(engine.root_node, top_level=True)
    own = functions(suite.root_node, top_level=False) | functions(
        pwsh.parsers()["tree-sitter-pwsh"].parse(LOADER.read_bytes()).root_node, top_level=False
    )
    called = set()
    cmdlets = pscommands.reference(REFERENCE) if REFERENCE.is_file() else {"editions": {}}
    for command in commands(suite.root_node):
        name = pwsh._command_name(command)
        if name is None or not name[0].isalpha() or name in BUILTIN_COMMANDS or name in own:
            continue
        if name not in library and any(pscommands._lookup(table, name) for table in cmdlets["editions"].values()):
            continue  # a cmdlet (test_windows_api.py binds the scripts' own calls)
        if name not in library:
            problems.append(f"calls {name}, which the engine does not define")
            continue
        called.add(name)
        declared = parameters(library[name])
        for parameter, _ in arguments(command):
            if parameter is not None and parameter not in declared:
                problems.append(f"calls {name} -{parameter}, which the engine's {name} does not declare")
    engine_own = set(script_assignments(engine))
    bundle_values = {name.lower() for name in pwsh.assignments(script)}
    given = given_values(suite)
    loader_given = {"bundleroot", "scriptname"}
    read = set()
    for function in sorted(reachable(library, called, set(own))):
        for variable in sorted(free_variables(library[function])):
            read.add(variable)
            if variable not in engine_own | bundle_values | set(given) | loader_given | {"cmdlet"}:
                problems.append(
                    f"{function} reads ${variable}, which neither the engine, the script's values nor the suite sets"
                )
    every_read = {v for f in library.values() for v in free_variables(f)}
    problems += [f"gives ${name}, which no function of the engine reads" for name in sorted(set(given) - every_read)]
    problems += throw_problems(suite, library, script_assignments(engine), set(own))
    return problems


def throw_problems(suite, library, install_values, overridden) -> list[str]:
    """Each ``{ ... } | Should -Throw`` expects an error that the code it runs can raise:
    the exception type is thrown there, the message is one of its strings, and a
    ``*Stop-Bundle N*`` message (the suite's stand-in for Stop-Bundle) has a call with code N."""
    import fnmatch

    problems = []
    for should in commands(suite.root_node):
        if pwsh._command_name(should) != "should":
            continue
        args = arguments(should)
        if "throw" not in [p for p, _ in args]:
            continue
        block = next((c for c in should.parent.children if c.type == "unary_expression"), None)
        called = {pwsh._command_name(c) for c in commands(block)} if block is not None else set()
        scope = reachable(library, called, overridden)
        nodes = [n for f in scope for n in pwsh.walk(library[f])]
        expected_type = next((v for p, v in args if p == "exceptiontype"), None)
        # Should's -Throw takes the expected message as its (positional) value.
        message = next((v for p, v in args if p in ("throw", "expectedmessage") and v is not None), None)
        where = f"line {should.start_point[0] + 1}"
        if expected_type is not None:
            wanted = literal(expected_type).strip("()[]").lower().removeprefix("system.")
            thrown = {
                t.text.decode().lower().removeprefix("system.")
                for n in nodes
                if n.type == "flow_control_statement" and n.children[0].type == "throw"
                for t in pwsh.walk(n)
                if t.type == "type_spec"
            }
            if wanted not in thrown:
                problems.append(f"{where}: expects [{wanted}], which {sorted(scope)} never throw")
        if message is not None:
            pattern = literal(message).lower()
            if pattern.strip("*").startswith("stop-bundle "):
                code = pattern.strip("*").split()[1]
                codes = {
                    literal(install_values[variable_name(v)])
                    for c in nodes
                    if pwsh._command_name(c) == "stop-bundle"
                    for p, v in arguments(c)[:1]
                    if p is None and v.text.decode().startswith("$") and variable_name(v) in install_values
                }
                if code not in codes:
                    problems.append(
                        f"{where}: expects Stop-Bundle {code}, but {sorted(scope)} stop only with {sorted(codes)}"
                    )
            else:
                strings = [n.text.decode().lower() for n in nodes if n.type == "string_literal"]
                if not any(fnmatch.fnmatchcase(text.strip("'\""), pattern) for text in strings):
                    problems.append(
                        f"{where}: expects a message like {pattern!r}, which no string of {sorted(scope)} is"
                    )
    return problems


def shape_problems(suite) -> list[str]:
    """Every shape a test asks Get-Shape for is one of its switch arms, each arm returns
    its bytes with the leading comma (an empty array must stay an array), no arm is unused,
    and those shapes are all asked for."""
    get_shape = functions(suite.root_node, top_level=False)["get-shape"]
    arms = {}
    for clause in (n for n in pwsh.walk(get_shape) if n.type == "switch_clause"):
        condition = next(c for c in clause.children if c.type == "switch_clause_condition")
        arms[literal(condition)] = next(c for c in clause.children if c.type == "statement_block")
    asked = {}
    for command in commands(suite.root_node):
        name = pwsh._command_name(command)
        if name == "get-shape":
            for parameter, value in arguments(command):
                if parameter is None and value.type != "variable" and not value.text.startswith(b"$"):
                    asked[literal(value)] = command
        elif name == "describe":
            args = arguments(command)
            cases = next((v for p, v in args if p == "foreach"), None)
            body = next((v for p, v in args if p is None and v.text.startswith(b"{")), None)
            if (
                cases is not None
                and body is not None
                and any(
                    pwsh._command_name(c) == "get-shape" and literal(arguments(c)[0][1]) == "$_" for c in commands(body)
                )
            ):
                for string in (n for n in pwsh.walk(cases) if n.type == "verbatim_string_characters"):
                    asked[pwsh.decode_verbatim(string.text.decode())] = command
    problems = [
        f"line {c.start_point[0] + 1}: Get-Shape has no '{shape}'"
        for shape, c in sorted(asked.items())
        if shape not in arms
    ]
    problems += [f"Get-Shape '{shape}' is never used" for shape in sorted(set(arms) - set(asked))]
    for shape, block in sorted(arms.items()):
        statements = [c for c in pwsh.walk(block) if c.type == "flow_control_statement"]
        if not statements or not all(
            s.children[0].type == "return" and s.children[-1].text.decode().lstrip().startswith(",") for s in statements
        ):
            problems.append(f"Get-Shape '{shape}' does not return ,<bytes>")
    problems += [f"no test uses the '{shape}' shape" for shape in sorted(HOSTS_SHAPES - set(asked))]
    return problems


def engine_and_script(grammars, files: dict[str, bytes], script: str):
    parser = grammars["tree-sitter-pwsh"]
    return (
        parser.parse(pwsh.script_text(files[program.engine_name(files)])),
        parser.parse(pwsh.script_text(files[script])),
    )


def test_environment_suite_matches_the_engine_it_loads(grammars, windows_env):
    """Environment.Tests.ps1 loads the engine with an --env bundle's install.ps1 values."""
    from generator.render import render

    suite = grammars["tree-sitter-pwsh"].parse((PESTER_DIR / "Environment.Tests.ps1").read_bytes())
    files = render(build_spec(ip="127.0.0.13", name="py", env=True), env=windows_env)
    assert suite_problems(suite, *engine_and_script(grammars, files, "install.ps1")) == []
    called = {pwsh._command_name(c) for c in commands(suite.root_node)}
    assert {
        "install-environment",
        "remove-environmentfolder",
        "get-basepythonproblem",
        "test-environmentinplace",
        "get-oldenvironment",
    } <= called


@pytest.mark.parametrize("name", ["Hosts.Tests.ps1", "Preflight.Tests.ps1"])
def test_suite_matches_the_engine_it_loads(grammars, canonical_files, name):
    suite = grammars["tree-sitter-pwsh"].parse((PESTER_DIR / name).read_bytes())
    assert suite_problems(suite, *engine_and_script(grammars, canonical_files, "install.ps1")) == []
    # Not vacuous: the suite does call the engine's functions and gives them values.
    called = {pwsh._command_name(c) for c in commands(suite.root_node)}
    wanted = {
        "Hosts.Tests.ps1": {"set-hostsblock", "get-hostsmapping", "write-hostsfile"},
        "Preflight.Tests.ps1": {"get-pythontreeproblem", "new-statefolder", "get-statefolderproblem"},
    }[name]
    assert wanted <= called and given_values(suite)


def test_hosts_suite_makes_every_shape_it_tests(grammars):
    suite = grammars["tree-sitter-pwsh"].parse((PESTER_DIR / "Hosts.Tests.ps1").read_bytes())
    assert shape_problems(suite) == []


def test_the_suite_checks_can_fail(grammars):
    parser = grammars["tree-sitter-pwsh"]
    install = parser.parse(
        b"$HostsBegin = '# BEGIN gen-bundle py'\r\n$ExitPreflight = 4\r\n$ExitTampered = 2\r\n"
        b"function Initialize-GenBundle {\r\n    param([hashtable]$Values, [object]$Caller)\r\n}\r\n"
        b"function Set-HostsBlock {\r\n    param([string]$Text)\r\n    return $HostsBegin + $HostsEnd + $Text\r\n}\r\n"
        b"function Read-It {\r\n    param()\r\n    throw [IO.IOException]::new('cannot read')\r\n}\r\n"
        b"function Write-It {\r\n    param()\r\n    Read-It\r\n    Stop-Bundle $ExitTampered 'changed'\r\n}\r\n"
    )
    suite = parser.parse(
        b"BeforeAll {\r\n    Initialize-GenBundle -Caller $null -Values @{ HostsBgin = 'x' }\r\n"
        b"    function Get-Shape {\r\n        param([string]$Name)\r\n        switch ($Name) {\r\n"
        b"            'crlf' { return ,[byte[]]@(13, 10) }\r\n            'lf' { return [byte[]]@(10) }\r\n"
        b"            'spare' { return ,[byte[]]@() }\r\n        }\r\n    }\r\n}\r\n"
        b"Describe 'x <_>' -ForEach @('crlf', 'lf', 'utf8-bmo') {\r\n    It 'y' {\r\n"
        b"        Set-HostsBlock -Text (Get-Shape $_) -Block @() | Should -Be 1\r\n        Set-HostsBlok -Text 'a'\r\n"
        b"        { Write-It } | Should -Throw -ExceptionType ([IO.InvalidDataException])"
        b" -ExpectedMessage '*UTF-16*'\r\n"
        b"        { Write-It } | Should -Throw '*Stop-Bundle 4*'\r\n"
        b"        { Write-It } | Should -Throw '*cannot read*'\r\n"
        b"    }\r\n}\r\n"
    )
    assert pwsh.problems(install) == [] and pwsh.problems(suite) == []
    script = parser.parse(b"$Bundle = @{\r\n    BundleName = 'py'\r\n}\r\n")
    assert suite_problems(suite, install, script) == [
        "calls set-hostsblock -block, which the engine's set-hostsblock does not declare",
        "calls set-hostsblok, which the engine does not define",
        "set-hostsblock reads $hostsend, which neither the engine, the script's values nor the suite sets",
        "gives $hostsbgin, which no function of the engine reads",
        "line 16: expects [io.invaliddataexception], which ['read-it', 'write-it'] never throw",
        "line 16: expects a message like '*utf-16*', which no string of ['read-it', 'write-it'] is",
        "line 17: expects Stop-Bundle 4, but ['read-it', 'write-it'] stop only with ['2']",
    ]
    assert shape_problems(suite) == [
        "line 12: Get-Shape has no 'utf8-bmo'",
        "Get-Shape 'spare' is never used",
        "Get-Shape 'lf' does not return ,<bytes>",
    ] + [f"no test uses the '{shape}' shape" for shape in sorted(HOSTS_SHAPES - {"crlf", "lf"})]


def test_windows_workflow_runs_pester_on_both_powershells(grammars):
    """The workflow's steps, read as the PowerShell they are: the bundle is made with the
    name and address the suites assume, in the folder they are pointed at, and a failed
    Pester test fails the job."""
    import yaml

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "windows.yml").read_text())
    job = workflow["jobs"]["pester"]
    assert job["runs-on"].startswith("windows")
    assert job["strategy"]["matrix"]["shell"] == ["powershell", "pwsh"]
    assert job["defaults"]["run"]["shell"] == "${{ matrix.shell }}"
    trees = []
    for step in job["steps"]:
        if "run" in step:
            tree = grammars["tree-sitter-pwsh"].parse(step["run"].encode())
            assert pwsh.problems(tree) == [], step.get("name")
            assert pwsh.ps7_only(tree) == [], step.get("name")  # the powershell leg is 5.1
            trees.append(tree)
    found = {pwsh._command_name(c): c for t in trees for c in commands(t.root_node)}
    bundles = [
        dict((p, v.text.decode() if v is not None else None) for p, v in arguments(c))
        for t in trees
        for c in commands(t.root_node)
        if pwsh._command_name(c) == "gen-bundle"
    ]
    made = next(b for b in bundles if "env" not in b)
    with_env = next(b for b in bundles if "env" in b)
    assert with_env["python-version"] == "3.11" and "pythonLocation" in with_env["python"]
    suite = grammars["tree-sitter-pwsh"].parse((PESTER_DIR / "Hosts.Tests.ps1").read_bytes())
    assumed = {name: literal(value) for name, value in script_assignments(suite).items()}
    assert "# BEGIN gen-bundle " + made["name"] == assumed["hostsbegin"] and made["ip"] == "127.0.0.13"
    handed = [
        n.children[-1].text.decode()
        for t in trees
        for n in pwsh.walk(t.root_node)
        if n.type == "assignment_expression" and n.children[0].text.decode().lower() == "$env:gen_bundle_out"
    ]
    assert handed == [made["out"]]
    handed_env = [
        n.children[-1].text.decode()
        for t in trees
        for n in pwsh.walk(t.root_node)
        if n.type == "assignment_expression" and n.children[0].text.decode().lower() == "$env:gen_bundle_env_out"
    ]
    assert handed_env == [with_env["out"]]
    pester = {p: v for p, v in arguments(found["invoke-pester"])}
    assert (REPO / pester["path"].text.decode()).resolve() == PESTER_DIR.resolve()
    assert "passthru" in pester
    result = next(
        n
        for t in trees
        for n in pwsh.walk(t.root_node)
        if n.type == "assignment_expression" and "Invoke-Pester" in n.children[-1].text.decode()
    )
    variable = result.children[0].text.decode()
    exits = [
        n
        for t in trees
        for n in pwsh.walk(t.root_node)
        if n.type == "if_statement" and f"{variable}.FailedCount" in n.text.decode() and "exit 1" in n.text.decode()
    ]
    assert exits, "a failed Pester test must fail the step"


@pytest.mark.parametrize("inputs", SCOPES, ids=["machine", "user", "spaced-python"])
@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_function_results_are_collected_before_counting(grammars, inputs, script):
    tree = grammars["tree-sitter-pwsh"].parse(pwsh.script_text(bundle(**inputs)[script]))
    assert pwsh.unwrapped_counts(tree) == []


def test_no_property_is_read_of_a_silenced_commands_result(grammars):
    """Under Set-StrictMode 3 a property read of ``$null`` throws: ``(Get-X -ErrorAction
    SilentlyContinue).Name`` fails exactly when the silencing was meant to help."""
    files = bundle()
    names = scripts_and_engine(files)
    for grammar in grammars.values():
        for name in names:
            assert pwsh.silenced_member_reads(grammar.parse(pwsh.script_text(files[name]))) == [], name


def test_the_silenced_read_check_can_fail(grammars):
    # 0.3.0's hosts-read.ps1: DataBasePath absent, and the run ended in 1603 before any check.
    old = (
        b"$HostsFolder = (Get-ItemProperty -LiteralPath 'HKLM:\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters'"
        b" -Name 'DataBasePath' -ErrorAction SilentlyContinue).DataBasePath\r\n"
        b"$size = (Get-Item -LiteralPath $p -ea 0).Length\r\n$kept = Get-Item -LiteralPath $p -ErrorAction SilentlyContinue\r\n"
    )
    for grammar in grammars.values():
        assert [p.split(":")[0] for p in pwsh.silenced_member_reads(grammar.parse(old))] == ["line 1", "line 2"]


def test_the_count_check_can_fail(grammars):
    tree = grammars["tree-sitter-pwsh"].parse(
        b"function Get-Task {\r\n    return @(1)\r\n}\r\n$task = Get-Task\r\n$ok = @(Get-Task)\r\n"
        b"if ($task.Count -eq 0) { }\r\nif ($ok.Count) { }\r\n"
    )
    assert [p.split(":")[0] for p in pwsh.unwrapped_counts(tree)] == ["line 4"]


def scripts_and_engine(files: dict[str, bytes]) -> list[str]:
    return [*ALL_SCRIPTS, next(name for name in files if name.endswith(".psm1"))]


@pytest.mark.parametrize("inputs", SCOPES, ids=["machine", "user", "spaced-python"])
def test_no_method_result_pollutes_a_functions_output(grammars, inputs):
    """A value-returning method called as a statement of its own inside a function adds its result
    to the function's output (planted, it slipped through every other check)."""
    files = bundle(**inputs)
    for name in scripts_and_engine(files):
        assert pwsh.output_pollution(grammars["tree-sitter-pwsh"].parse(pwsh.script_text(files[name]))) == [], name


def test_the_output_pollution_check_can_fail(grammars):
    """The planted line: an ArrayList's Add inside a function whose result is used; and the
    shapes that do not pollute (cast, assigned, piped, a Generic List's Add)."""
    planted = (
        b"function Get-Names {\r\n    $list = New-Object System.Collections.ArrayList\r\n    $list.Add('x')\r\n"
        b"    $seen = New-Object 'System.Collections.Generic.HashSet[string]'\r\n    $seen.Add('y')\r\n"
        b"    $text = New-Object System.Text.StringBuilder\r\n    $text.Append('z')\r\n"
        b"    [void]$list.Add('a')\r\n    $null = $seen.Add('b')\r\n    $text.Append('c') | Out-Null\r\n"
        b"    $plain = New-Object System.Collections.Generic.List[string]\r\n    $plain.Add('d')\r\n"
        b"    return $list\r\n}\r\nif (Get-Names) { }\r\n"
    )
    found = pwsh.output_pollution(grammars["tree-sitter-pwsh"].parse(planted))
    assert [line.split(":")[0] for line in found] == ["line 3", "line 5", "line 7"], found


@pytest.mark.parametrize("inputs", SCOPES, ids=["machine", "user", "spaced-python"])
def test_no_property_is_read_of_a_value_that_may_be_null(grammars, inputs):
    """``$x = $null`` or a silenced command's result, then ``$x.Length`` with no test of $x: under
    Set-StrictMode 3 the read throws (planted, it slipped through)."""
    files = bundle(**inputs)
    for name in scripts_and_engine(files):
        assert pwsh.null_member_reads(grammars["tree-sitter-pwsh"].parse(pwsh.script_text(files[name]))) == [], name


def test_the_null_read_check_can_fail(grammars):
    planted = (
        b"function Get-Size {\r\n    param($p)\r\n    $x = $null\r\n    $n = $x.Length\r\n"
        b"    $item = Get-Item -LiteralPath $p -ErrorAction SilentlyContinue\r\n    if ($item) { $item.Length }\r\n"
        b"    $item.Length\r\n    $ok = $null\r\n    $ok = 'a'\r\n    $ok.Length\r\n    $null -ne $x -and $x.Length\r\n"
        b"    $found = Get-Item -LiteralPath $p -ErrorAction Ignore\r\n    if (-not $found) {\r\n        return 0\r\n    }\r\n"
        b"    return $found.Length\r\n}\r\n"
    )
    found = pwsh.null_member_reads(grammars["tree-sitter-pwsh"].parse(planted))
    assert [line.split(":")[0] for line in found] == ["line 4", "line 7"], found


def handed_over(grammar, files: dict[str, bytes]) -> set[str]:
    """The names the scripts hand the engine (Initialize-GenBundle): each script's values block,
    and the keys the script adds to it in its call."""
    names: set[str] = set()
    for name in ALL_SCRIPTS:
        tree = grammar.parse(pwsh.script_text(files[name]))
        names |= {key.lower() for key in pwsh.assignments(tree)}
        for node in pwsh.walk(tree.root_node):
            if node.type == "command" and pwsh._command_name(node) == "initialize-genbundle":
                names |= {k.text.decode().lower() for k in pwsh.walk(node) if k.type == "key_expression"}
    return names


@pytest.mark.parametrize("inputs", SCOPES, ids=["machine", "user", "spaced-python"])
def test_every_variable_an_engine_function_reads_is_set_for_it(grammars, inputs):
    grammar = grammars["tree-sitter-pwsh"]
    files = bundle(**inputs)
    engine = grammar.parse(pwsh.script_text(files[program.engine_name(files)]))
    known = handed_over(grammar, files)
    assert {"bundlename", "bundleroot", "scriptname"} <= known
    assert pwsh.unset_variable_reads(engine, known) == []


def test_the_unset_variable_check_can_fail(grammars):
    """The planted shape: a variable set only as another function's local, read by a function that
    works when that one calls it and throws under StrictMode when anything else does."""
    planted = (
        b"$Run = @{}\r\nfunction Read-It {\r\n    $found = Get-Item -LiteralPath $BundleRoot\r\n    $Run.Found = $found\r\n}\r\n"
        b"function Use-It {\r\n    param([string]$Name)\r\n    foreach ($item in @(1)) { $item }\r\n"
        b"    $script:Seen = $true\r\n    return $found.Length + $Name.Length + $Run.Count + $Seen + $nowhere\r\n}\r\n"
    )
    found = pwsh.unset_variable_reads(grammars["tree-sitter-pwsh"].parse(planted), {"BundleRoot"})
    assert found == ["line 10: use-it reads $found (a local of read-it)", "line 10: use-it reads $nowhere"], found
