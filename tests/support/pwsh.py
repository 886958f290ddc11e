"""PowerShell checks on a parse tree (tree-sitter), not on strings."""

from __future__ import annotations

import re
from collections.abc import Iterator

# Constructs of PowerShell 7 that Windows PowerShell 5.1 cannot parse
# (node names of the tree-sitter-pwsh grammar).
PS7_ONLY_NODES = frozenset(
    {
        "ternary_expression",
        "ternary_argument_expression",
        "null_coalesce_expression",
        "null_coalesce_argument_expression",
        "pipeline_chain_tail",
        "??=",
    }
)
PS_QUOTES = "'\u2018\u2019\u201a\u201b"


def parsers():
    """Both grammars, by name; each is an independent reading of the script."""
    import tree_sitter_powershell
    import tree_sitter_pwsh
    from tree_sitter import Language, Parser

    return {
        "tree-sitter-pwsh": Parser(Language(tree_sitter_pwsh.language())),
        "tree-sitter-powershell": Parser(Language(tree_sitter_powershell.language())),
    }


def script_text(data: bytes) -> bytes:
    """The script as a parser sees it: without the UTF-8 BOM."""
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def walk(node) -> Iterator:
    yield node
    for child in node.children:
        yield from walk(child)


def problems(tree) -> list[str]:
    """ERROR and MISSING nodes, with their line numbers."""
    found = []
    for node in walk(tree.root_node):
        if node.type == "ERROR" or node.is_missing:
            found.append(f"{'MISSING' if node.is_missing else 'ERROR'} at line {node.start_point[0] + 1}")
    return found


def ps7_only(tree) -> list[str]:
    found = []
    for node in walk(tree.root_node):
        if node.type in PS7_ONLY_NODES:
            found.append(f"{node.type} at line {node.start_point[0] + 1}")
        elif node.type == "command_parameter" and node.text.decode().lower() == "-parallel":
            found.append(f"ForEach-Object -Parallel at line {node.start_point[0] + 1}")
        elif node.type == "expandable_string_literal" and "`u{" in node.text.decode():
            found.append(f"`u{{}} escape at line {node.start_point[0] + 1}")
    return found


def decode_verbatim(literal: str) -> str:
    """The value of a single-quoted PowerShell string literal, quotes included."""
    assert literal[0] in PS_QUOTES and literal[-1] in PS_QUOTES, literal
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch in PS_QUOTES:
            assert i + 1 < len(body) and body[i + 1] in PS_QUOTES, f"lone quote in {literal!r}"
            i += 1
        out.append(body[i])
        i += 1
    return "".join(out)


def assignments(tree) -> dict[str, object]:
    """Top-level ``$Name = <value>`` assignments: each value as the literal(s) it holds.

    A plain literal gives its string; ``Join-Path $env:X 'rest'`` gives
    ``('X', 'rest')``; anything else gives the source text.
    """
    result: dict[str, object] = {}
    for node in walk(tree.root_node):
        if node.type == "hash_entry" and _in_bundle_values(node):
            key = node.children[0].text.decode()
            value = next((c for c in node.children if c.type == "pipeline"), None)
            if value is not None and key not in result:
                result[key] = _literal_value(value)
            continue
        if node.type != "assignment_expression":
            continue
        left = node.child_by_field_name("left") or node.children[0]
        variable = next((n for n in walk(left) if n.type == "variable"), None)
        value = node.child_by_field_name("value") or node.children[-1]
        if variable is None or variable.text.decode().lower().startswith("$env:"):
            continue
        name = variable.text.decode()[1:]
        if name in result:
            continue
        result[name] = _literal_value(value)
    return result


def _in_bundle_values(entry) -> bool:
    """A key of the scripts' values block, ``$Bundle = @{ ... }`` (not of a nested hashtable)."""
    body = entry.parent
    literal = body.parent if body is not None else None
    assignment = literal
    while assignment is not None and assignment.type != "assignment_expression":
        if assignment.type == "hash_entry":
            return False
        assignment = assignment.parent
    return assignment is not None and assignment.children[0].text.decode() == "$Bundle"


def _literal_value(value) -> object:
    """A single-quoted literal's string; ``Join-Path $env:X 'rest'`` as ('X', 'rest'); else the text."""
    strings = [n for n in walk(value) if n.type == "verbatim_string_characters"]
    env = [n for n in walk(value) if n.type == "variable" and n.text.decode().lower().startswith("$env:")]
    if env and len(strings) == 1:
        return env[0].text.decode()[5:], decode_verbatim(strings[0].text.decode())
    if len(strings) == 1 and value.text.decode().strip() == strings[0].text.decode():
        return decode_verbatim(strings[0].text.decode())
    return value.text.decode()


# Commands and .NET methods that change the machine: each must run only under
# a $PSCmdlet.ShouldProcess(...) branch, so that -WhatIf shows it and skips it.
STATE_CHANGING_COMMANDS = frozenset(
    name.lower()
    for name in (
        "Copy-Item",
        "Move-Item",
        "Remove-Item",
        "Rename-Item",
        "New-Item",
        "Set-Item",
        "Set-Content",
        "Add-Content",
        "Out-File",
        "Set-ItemProperty",
        "New-ItemProperty",
        "Remove-ItemProperty",
        "Set-Acl",
        "Register-ScheduledTask",
        "Unregister-ScheduledTask",
        "Start-ScheduledTask",
        "Stop-ScheduledTask",
        "Set-ScheduledTask",
        "Enable-ScheduledTask",
        "Disable-ScheduledTask",
        "Stop-Process",
        "Start-Process",
        "Clear-DnsClientCache",
        "Start-Transcript",
        "ipconfig.exe",
    )
)
STATE_CHANGING_METHODS = frozenset(
    {
        "writeallbytes",
        "writealltext",
        "writealllines",
        "appendalltext",
        "appendalllines",
        "create",
        "createtext",
        "appendtext",
        "openwrite",
        "replace",
        "move",
        "delete",
        "copy",
        "setattributes",
        "createdirectory",
        "deletefolder",
        "registertaskdefinition",
        "save",
        "writeentry",
        "createeventsource",
    }
)


def _command_name(node) -> str | None:
    if node.type != "command":
        return None
    name = node.child_by_field_name("command_name") or next(
        (c for c in node.children if c.type == "command_name"), None
    )
    if name is None:
        return None
    text = name.text.decode().strip("'\"")
    return text.rsplit("\\", 1)[-1].lower()


# FileModes with which [IO.File]::Open / [IO.FileStream]::new create or cut a file.
WRITING_FILE_MODES = re.compile(r"FileMode\]::(Create|CreateNew|OpenOrCreate|Truncate|Append)\b", re.IGNORECASE)


def _changes_state(node) -> bool:
    if _command_name(node) in STATE_CHANGING_COMMANDS:
        return True
    if node.type == "invocation_expression":
        member = next((c for c in node.children if c.type == "member_name"), None)
        if member is not None and member.text.decode().lower() == "open":
            receiver = node.children[0].text.decode().lower()
            return receiver in ("[io.file]", "[system.io.file]") and bool(WRITING_FILE_MODES.search(node.text.decode()))
        if member is not None and member.text.decode().lower() in STATE_CHANGING_METHODS:
            receiver = node.children[0].text.decode()
            if member.text.decode().lower() in ("writeentry", "createeventsource"):
                return receiver.lower() in ("[diagnostics.eventlog]", "[system.diagnostics.eventlog]")
            return receiver.lower().startswith(("[io.", "[system.io.")) or member.text.decode().lower() in (
                "deletefolder",
                "registertaskdefinition",
                "save",
            )
    return False


GUARDS = ("$PSCmdlet.ShouldProcess(", "$Cmdlet.ShouldProcess(")  # the script's own; or the engine's Confirm-Change
_WRAPPERS = ("pipeline", "pipeline_chain", "unary_expression", "parenthesized_expression")


def _unwrapped(node):
    """``node`` without the pipeline, parentheses and operator-less unary nodes around one expression."""
    while (
        node.type in _WRAPPERS
        and len(node.named_children) == 1
        and (node.type != "unary_expression" or node.child_count == 1)
    ):
        node = node.named_children[0]
    return node


def _is_guard_call(node) -> bool:
    node = _unwrapped(node)
    if node.type == "command":
        return _command_name(node) == "confirm-change"
    return node.type == "invocation_expression" and node.text.decode().startswith(GUARDS)


def _conjuncts(node) -> list:
    """The operands of a condition's top-level -and chain (the condition itself when it is none)."""
    node = _unwrapped(node) if node.type in ("pipeline", "pipeline_chain") else node
    while node.type in ("pipeline", "pipeline_chain") and node.child_count == 1:
        node = node.children[0]
    if node.type == "logical_expression" and any(c.type.lower() == "-and" for c in node.children):
        left, right = node.named_children[0], node.named_children[-1]
        return _conjuncts(left) + _conjuncts(right)
    return [node]


def _guarded(node) -> bool:
    """Inside the 'then' block of an if/elseif whose condition cannot be true unless ShouldProcess
    said yes: the condition is the call (the script's own, or the engine's Confirm-Change, which
    asks the script's), or an -and chain with the call as one operand; not negated, not -or'd."""
    child, parent = node, node.parent
    while parent is not None:
        if parent.type in ("if_statement", "elseif_clause") and child.type == "statement_block":
            condition = next((c for c in parent.children if c.type == "pipeline"), None)
            if condition is not None and any(_is_guard_call(part) for part in _conjuncts(condition)):
                return True
        child, parent = parent, parent.parent
    return False


# Changes outside the scripts' ShouldProcess, each for a reason: the engine's copy for this run,
# in a folder the script makes with its own ACL and deletes at the end; the plan the caller
# asked for with -Plan (Write-BundlePlan); Confirm-Change's own bookkeeping; the run's lock file,
# in the admin-only state root, which a real run opens (creating it once) and -WhatIf never
# (Enter-BundleRun).
UNGUARDED_BY_DESIGN = (
    re.compile(r"\$engineFolder\b"),
    re.compile(
        re.escape(
            "[IO.File]::Open($path, [IO.FileMode]::OpenOrCreate, [IO.FileAccess]::ReadWrite, [IO.FileShare]::None)"
        )
    ),
    re.compile(re.escape("[IO.File]::WriteAllText($Path, (ConvertTo-Json -InputObject @($PlanEntries)")),
)


def _enclosing_function(node) -> str | None:
    parent = node.parent
    while parent is not None:
        if parent.type == "function_statement":
            name = next(c for c in parent.children if c.type == "function_name")
            return name.text.decode().lower()
        parent = parent.parent
    return None


def unguarded_changes(tree) -> list[str]:
    """State changes that -WhatIf would not stop: calls outside a ShouldProcess
    branch, directly or through a function called from outside one."""
    nodes = list(walk(tree.root_node))
    changing_functions: set[str] = set()
    problems: list[str] = []
    while True:
        found = []
        for node in nodes:
            name = _command_name(node)
            if _changes_state(node) or (name is not None and name in changing_functions):
                if not _guarded(node) and not any(reason.search(node.text.decode()) for reason in UNGUARDED_BY_DESIGN):
                    found.append(node)
        new_functions = {f for f in map(_enclosing_function, found) if f is not None} - changing_functions
        if not new_functions:
            break
        changing_functions |= new_functions
    for node in found:
        if _enclosing_function(node) is None:
            problems.append(f"line {node.start_point[0] + 1}: {node.text.decode().splitlines()[0][:80]}")
    return problems


def literal_violations(tree, sentinels: list[str]) -> list[str]:
    """Places where a bundle value stands other than in a single-quoted literal
    (or a number, or a comment)."""
    problems = []
    expandable_strings = ("expandable_string_literal", "expandable_here_string_literal")
    for node in walk(tree.root_node):
        expandable = node.type in expandable_strings
        if not expandable and (
            node.child_count or node.type in ("comment", "verbatim_string_characters", "decimal_integer_literal")
        ):
            continue
        if node.parent is not None and node.parent.type in expandable_strings:
            continue  # reported with the whole string
        text = node.text.decode()
        for sentinel in sentinels:
            if sentinel in text:
                problems.append(f"line {node.start_point[0] + 1}: {node.type} {text[:60]!r}")
    return problems


def unwrapped_counts(tree) -> list[str]:
    """``$x = Get-Thing`` then ``$x.Count``: PowerShell unrolls a function's one
    result to a single object, whose .Count throws under Set-StrictMode 3.
    Such results must be collected with @(...)."""
    import re

    functions = {
        next(c for c in node.children if c.type == "function_name").text.decode().lower()
        for node in walk(tree.root_node)
        if node.type == "function_statement"
    }
    source = tree.root_node.text.decode()
    problems = []
    for node in walk(tree.root_node):
        if node.type != "assignment_expression":
            continue
        variable = next((n for n in walk(node.children[0]) if n.type == "variable"), None)
        value = node.children[-1].text.decode().strip()
        called = value.split(None, 1)[0].lower() if value else ""
        if variable is None or called not in functions:
            continue
        name = variable.text.decode()
        if re.search(re.escape(name) + r"\.Count\b", source, re.IGNORECASE):
            problems.append(f"line {node.start_point[0] + 1}: {name} = {value[:50]} (then {name}.Count)")
    return problems


SILENCED = ("silentlycontinue", "ignore", "0")


def silenced_member_reads(tree) -> list[str]:
    """``(Get-Thing -ErrorAction SilentlyContinue).Name``: the command may give nothing, and under
    Set-StrictMode 3 reading a property of that ``$null`` throws, the very error the silencing meant
    to avoid. Such a result is kept in a variable and tested before its property is read."""
    found = []
    for node in walk(tree.root_node):
        if node.type != "member_access" or node.children[0].type != "parenthesized_expression":
            continue
        for inner in walk(node.children[0]):
            if inner.type != "command_parameter" or inner.text.decode().lower() not in ("-erroraction", "-ea"):
                continue
            value = inner.next_named_sibling
            while value is not None and value.type == "command_argument_sep":
                value = value.next_named_sibling
            if value is not None and value.text.decode().lower() in SILENCED:
                found.append(f"line {node.start_point[0] + 1}: {node.text.decode()[:80]}")
                break
    return found


# Methods whose result a bare call statement would add to its function's output: ArrayList.Add
# (the index), HashSet.Add and .Remove and List.Remove (a bool), StringBuilder.Append... (the
# builder). Generic.List[T].Add returns nothing: a receiver made as one is not flagged for Add.
RESULT_METHODS = frozenset({"add", "remove", "append", "appendline", "appendformat", "insert"})
_VOID_ADD = re.compile(
    r"(New-Object\s+(System\.)?Collections\.Generic\.(List|Queue|Stack)\[|\[(System\.)?Collections\.Generic\.(List|Queue|Stack)\[[^\]]+\]\]::new\()",
    re.IGNORECASE,
)


def output_pollution(tree) -> list[str]:
    """``$list.Add('x')`` as a statement of its own inside a function: a method that returns a
    value (ArrayList.Add's index, HashSet.Add's bool, StringBuilder.Append's builder) puts it into
    the function's output, and a caller that uses the function's result gets it too - ``if
    (Confirm-Change ...)`` true for an index, a count one too many. Such a call is cast to [void],
    assigned to $null or piped to Out-Null; an Add on a receiver made as a Generic List, Queue or
    Stack (whose Add returns nothing) is fine."""
    source = tree.root_node.text.decode()
    void_receivers = {
        m.group(1).lower() for m in re.finditer(r"(\$[\w:]+)\s*=\s*([^\r\n]+)", source) if _VOID_ADD.search(m.group(2))
    }
    found = []
    for node in walk(tree.root_node):
        if node.type != "invocation_expression" or _enclosing_function(node) is None:
            continue
        member = next((c for c in node.children if c.type == "member_name"), None)
        if member is None or member.text.decode().lower() not in RESULT_METHODS:
            continue
        chain, parent = [], node.parent
        while parent is not None and parent.type != "statement_list":
            chain.append(parent)
            parent = parent.parent
        if [p.type for p in chain] != ["unary_expression", "pipeline_chain", "pipeline"] or chain[-1].text != node.text:
            continue  # used: cast, assigned, piped, an argument, a condition
        receiver = node.children[0].text.decode().lower()
        if member.text.decode().lower() == "add" and receiver in void_receivers:
            continue
        found.append(f"line {node.start_point[0] + 1}: {node.text.decode()[:80]}")
    return found


def _may_be_null(value: str) -> bool:
    """An assignment's value that can be $null: $null itself, or a silenced command's result."""
    text = value.strip().lower()
    if text == "$null":
        return True
    return bool(re.search(r"-(erroraction|ea)\s+(silentlycontinue|ignore|0)\b", text)) and not text.startswith("@(")


def null_member_reads(tree) -> list[str]:
    """``$x = $null`` (or ``$x = Get-Item ... -ErrorAction SilentlyContinue``), then ``$x.Length``
    with no test of ``$x`` around the read: under Set-StrictMode 3 a property read of $null throws
    (and a method call on it always does). The read must sit in a branch whose condition names
    ``$x`` (an if, elseif or while, or the right of an -and that names it)."""
    found = []
    for function in walk(tree.root_node):
        if function.type != "function_statement":
            continue
        assigned: list[tuple[int, str, bool]] = []
        for node in walk(function):
            if node.type == "assignment_expression":
                target = node.children[0].text.decode().strip().lower()
                if re.fullmatch(r"\$[\w:]+", target):
                    assigned.append((node.end_byte, target, _may_be_null(node.children[-1].text.decode())))
        for node in walk(function):
            if node.type not in ("member_access", "invocation_expression"):
                continue
            receiver = node.children[0].text.decode().strip().lower()
            if not re.fullmatch(r"\$[\w:]+", receiver):
                continue
            before = [nullable for end, name, nullable in assigned if name == receiver and end <= node.start_byte]
            if not before or not before[-1] or _tested(node, receiver) or _returned_before(function, node, receiver):
                continue
            found.append(f"line {node.start_point[0] + 1}: {node.text.decode()[:80]}")
    return found


def _tested(node, variable: str) -> bool:
    """Inside a branch, loop or -and chain whose condition names ``variable``."""
    child, parent = node, node.parent
    while parent is not None and parent.type != "function_statement":
        if parent.type in ("if_statement", "elseif_clause", "while_statement") and child.type == "statement_block":
            condition = next((c for c in parent.children if c.type == "pipeline"), None)
            if condition is not None and _names(condition.text.decode(), variable):
                return True
        if parent.type in ("logical_expression", "pipeline_chain") and child != parent.children[0]:
            if _names(parent.children[0].text.decode(), variable):
                return True
        child, parent = parent, parent.parent
    return False


def _names(text: str, variable: str) -> bool:
    """``variable`` (lowercase, with its $) stands whole in ``text``: $item is not $items."""
    return re.search(re.escape(variable) + r"\b", text.lower()) is not None


def _returned_before(function, node, variable: str) -> bool:
    """An earlier ``if (-not $x ...) { return }`` (or ``$null -eq $x``) in the function: the read is
    not reached with $null. ``if ($x) { return }`` is no such guard: after it, $x is null."""
    for branch in walk(function):
        if branch.type != "if_statement" or branch.end_byte > node.start_byte:
            continue
        condition = next((c for c in branch.children if c.type == "pipeline"), None)
        block = next((c for c in branch.children if c.type == "statement_block"), None)
        if condition is None or block is None:
            continue
        text = condition.text.decode().lower()
        name = re.escape(variable) + r"\b"
        if not re.search(r"(-not\s+|!)" + name + r"|\$null\s+-eq\s+" + name + r"|" + name + r"\s+-eq\s+\$null", text):
            continue
        if any(n.type == "flow_control_statement" for n in walk(block)):
            return True
    return False


# Variables every PowerShell session has: a function may read them without setting them.
AUTOMATIC_VARIABLES = frozenset(
    {
        "_", "psitem", "null", "true", "false", "args", "input", "matches", "lastexitcode", "psscriptroot",
        "pscommandpath", "psversiontable", "host", "erroractionpreference", "warningpreference",
        "verbosepreference", "whatifpreference", "confirmpreference", "progresspreference",
        "informationpreference", "debugpreference", "pscmdlet", "psboundparameters", "myinvocation",
        "error", "this", "foreach", "switch", "pshome", "executioncontext", "ofs", "home", "pid", "profile",
    }
)  # fmt: skip


def _variable_name(text: str) -> tuple[str, str | None]:
    """A variable's name, lowercase, and its scope prefix (script, global, ...) or None."""
    name = text.lstrip("$@").strip("{}").lower()
    for prefix in ("script:", "global:", "local:", "private:"):
        if name.startswith(prefix):
            return name[len(prefix) :], prefix[:-1]
    return name, None


def unset_variable_reads(tree, known: set[str]) -> list[str]:
    """Variables a function reads that are none of: its own (assigned, a foreach variable, a [ref]),
    its parameters, the module's (assigned outside any function, or as $script:), ``known`` (the
    values a script hands over), or automatic. Under Set-StrictMode 3 such a read throws - unless
    the caller happens to have a variable of that name, which PowerShell's dynamic scoping then
    reads: a variable set only as another function's local works from one caller and fails from
    the next (issue 25, item 6)."""
    module, local, params, written = {name.lower() for name in known}, {}, {}, set()
    for node in walk(tree.root_node):
        targets = []
        if node.type == "assignment_expression":
            targets = [n for n in walk(node.children[0]) if n.type == "variable"]
        elif node.type == "foreach_statement":
            targets = [c for c in node.children if c.type == "variable"][:1]
        elif node.type == "cast_expression" and node.text.decode().lower().startswith("[ref]"):
            targets = [n for n in walk(node) if n.type == "variable"]
        elif node.type == "script_parameter":
            variable = next((n for n in walk(node) if n.type == "variable"), None)
            if variable is not None:
                written.add((variable.start_byte, variable.end_byte))
                params.setdefault(_enclosing_function(node), set()).add(_variable_name(variable.text.decode())[0])
        for variable in targets:
            written.add((variable.start_byte, variable.end_byte))
            name, scope = _variable_name(variable.text.decode())
            function = _enclosing_function(variable)
            if function is None or scope in ("script", "global"):
                module.add(name)
            else:
                local.setdefault(function, set()).add(name)
    found = []
    for node in walk(tree.root_node):
        if node.type != "variable" or (node.start_byte, node.end_byte) in written:
            continue
        function = _enclosing_function(node)
        name, _ = _variable_name(node.text.decode())
        if function is None or name.startswith("env:") or name in AUTOMATIC_VARIABLES or name in module:
            continue
        if name in local.get(function, set()) or name in params.get(function, set()):
            continue
        elsewhere = sorted(f for f, names in local.items() if name in names)
        where = f" (a local of {', '.join(elsewhere)})" if elsewhere else ""
        found.append(f"line {node.start_point[0] + 1}: {function} reads {node.text.decode()}{where}")
    return found
