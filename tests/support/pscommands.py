"""Commands of a PowerShell script bound as PowerShell binds them, against Microsoft's
reference tables (../shared/reference/powershell/cmdlets.json) and the script's own functions.

A command runs on Windows PowerShell 5.1, on PowerShell 7.4, or on both: the branch it sits
on decides (``if ($PSVersionTable.PSEdition -eq 'Core') {...} else {...}``). A cmdlet must
exist for every edition that reaches it, in the edition's own table or in the tables of
Windows' inbox modules (ScheduledTasks, NetTCPIP, DnsClient... as of Windows Server 2016,
which is Windows 10 1607, and 2019), which both editions load.

Binding follows PowerShell's rules (about_Parameters, about_Parameter_Sets,
about_CommonParameters): a parameter is named by its full name, an alias, or a prefix that
matches one parameter only; a switch takes a value only as ``-Switch:value``, and then only a
boolean or a number; every other parameter takes the next element; what is left binds by
position; one parameter set must hold every named parameter, take every positional argument
and get every mandatory parameter (a command that is piped into may get one from the pipe).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from . import pwsh

EDITIONS = ("5.1", "7.4")
INBOX = ("windows-2016", "windows-2019")
ALL_SETS = "(All)"
SWITCH_TYPES = ("System.Management.Automation.SwitchParameter", "SwitchParameter")

# about_CommonParameters (reference/5.1 and reference/7.4): name -> (aliases, is a switch).
COMMON = {
    "Debug": (("db",), True),
    "ErrorAction": (("ea",), False),
    "ErrorVariable": (("ev",), False),
    "InformationAction": (("infa",), False),
    "InformationVariable": (("iv",), False),
    "OutBuffer": (("ob",), False),
    "OutVariable": (("ov",), False),
    "PipelineVariable": (("pv",), False),
    "Verbose": (("vb",), True),
    "WarningAction": (("wa",), False),
    "WarningVariable": (("wv",), False),
}
COMMON_7_ONLY = {"ProgressAction": (("proga",), False)}  # added in PowerShell 7.4
# about_Character_Encoding: -Encoding values that both editions take (5.1's
# FileSystemCmdletProviderEncoding names; 7.4's names for System.Text.Encoding).
ENCODINGS_BOTH = frozenset({"ascii", "bigendianunicode", "bigendianutf32", "oem", "unicode", "utf7", "utf8", "utf32"})
ENCODING_TYPES = ("Microsoft.PowerShell.Commands.FileSystemCmdletProviderEncoding", "System.Text.Encoding")


@dataclass(frozen=True)
class Parameter:
    name: str
    aliases: tuple[str, ...]
    switch: bool
    sets: frozenset[str]  # ALL_SETS for every set
    position: dict = field(hash=False, compare=False)  # set -> position or None
    required: dict = field(hash=False, compare=False)  # set -> bool
    type: str = ""

    def in_set(self, name: str) -> bool:
        return ALL_SETS in self.sets or name in self.sets

    def position_in(self, name: str) -> int | None:
        return self.position.get(name, self.position.get(ALL_SETS))

    def required_in(self, name: str) -> bool:
        return bool(self.required.get(name, self.required.get(ALL_SETS, False)))


@dataclass(frozen=True)
class Signature:
    """What a command accepts: a cmdlet's from the tables, or a script function's from its param()."""

    name: str
    parameters: tuple[Parameter, ...]
    sets: tuple[str, ...]
    source: str  # the table it came from, or "function"


@dataclass(frozen=True)
class Call:
    name: str  # as written
    node: object
    line: int
    piped: bool
    editions: frozenset[str]
    elements: tuple  # the command_elements' children, separators left out


@cache
def reference(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _signature(name: str, entry: dict, source: str, common: dict) -> Signature:
    parameters = []
    for pname, facts in sorted(entry["parameters"].items()):
        parameters.append(
            Parameter(
                pname,
                tuple(facts["aliases"]),
                facts["type"] in SWITCH_TYPES,
                frozenset(facts["sets"]),
                facts["position"],
                facts["required"],
                facts["type"],
            )
        )
    for pname, (aliases, switch) in common.items():
        if pname not in entry["parameters"]:
            parameters.append(
                Parameter(pname, aliases, switch, frozenset({ALL_SETS}), {ALL_SETS: None}, {ALL_SETS: False})
            )
    return Signature(name, tuple(parameters), tuple(entry["sets"]) or (ALL_SETS,), source)


def cmdlet(ref: dict, name: str, edition: str) -> Signature | None:
    """The cmdlet as the edition knows it: its own table first, then Windows' inbox modules
    (both Server 2016 and 2019 must have it: the oldest Windows the bundle supports is 1607)."""
    common = COMMON | (COMMON_7_ONLY if edition == "7.4" else {})
    tables = ref["editions"]
    for table in (edition,):
        entry = _lookup(tables[table], name)
        if entry is not None:
            return _signature(entry[0], entry[1], table, common)
    entries = [_lookup(tables[table], name) for table in INBOX]
    if all(entries):
        return _signature(entries[0][0], entries[0][1], INBOX[0], common)
    return None


def _lookup(table: dict, name: str):
    lowered = {key.lower(): key for key in table}
    key = lowered.get(name.lower())
    return (key, table[key]) if key else None


# -- the script's own functions ---------------------------------------------------------
def functions(tree) -> dict[str, Signature]:
    """Each function the script defines, with the parameters of its param() block. A function
    without [CmdletBinding()] or [Parameter()] is a simple function: no common parameters."""
    found = {}
    for node in pwsh.walk(tree.root_node):
        if node.type != "function_statement":
            continue
        name = next(c for c in node.children if c.type == "function_name").text.decode()
        block = next((n for n in pwsh.walk(node) if n.type == "param_block"), None)
        if block is not None and pwsh._enclosing_function(block) != name.lower():
            block = None  # a nested function's, not this one's
        parameters, position = [], 0
        advanced = block is not None and bool(re.search(r"\[(CmdletBinding|Parameter)\b", block.text.decode(), re.I))
        for p in (n for n in pwsh.walk(block) if n.type == "script_parameter") if block is not None else ():
            variable = next(c for c in p.children if c.type == "variable").text.decode()[1:]
            switch = bool(re.search(r"\[switch\]", p.text.decode(), re.I))
            mandatory = bool(re.search(r"Mandatory", p.text.decode()))
            parameters.append(
                Parameter(
                    variable,
                    (),
                    switch,
                    frozenset({ALL_SETS}),
                    {ALL_SETS: None if switch else position},
                    {ALL_SETS: mandatory},
                )
            )
            position += 0 if switch else 1
        if advanced:
            parameters += [
                Parameter(n, a, s, frozenset({ALL_SETS}), {ALL_SETS: None}, {ALL_SETS: False})
                for n, (a, s) in COMMON.items()
            ]
        found[name.lower()] = Signature(name, tuple(parameters), (ALL_SETS,), "function")
    return found


# -- calls --------------------------------------------------------------------------------
EDITION_TEST = re.compile(r"^\$PSVersionTable\.PSEdition\s+-(?:c?)(eq|ne)\s+'(Core|Desktop)'$", re.I)


def editions(node) -> frozenset[str]:
    """The editions whose run can reach node, from the edition tests of the ifs around it."""
    reach = set(EDITIONS)
    child, parent = node, node.parent
    while parent is not None:
        if parent.type in ("if_statement", "else_clause"):
            statement = parent if parent.type == "if_statement" else parent.parent
            condition = next((c for c in statement.children if c.type == "pipeline"), None)
            match = EDITION_TEST.match(condition.text.decode().strip()) if condition is not None else None
            if match:
                core_when_true = (match[1].lower() == "eq") == (match[2].lower() == "core")
                in_then = parent.type == "if_statement" and child.type == "statement_block"
                in_else = parent.type == "else_clause" or (
                    parent.type == "if_statement" and child.type == "else_clause"
                )
                if in_then:
                    reach &= {"7.4"} if core_when_true else {"5.1"}
                elif in_else:
                    reach &= {"5.1"} if core_when_true else {"7.4"}
        child, parent = parent, parent.parent
    return frozenset(reach)


def calls(tree) -> list[Call]:
    found = []
    for node in pwsh.walk(tree.root_node):
        if node.type != "command":
            continue
        name_node = next((c for c in node.children if c.type in ("command_name", "command_name_expr")), None)
        if name_node is None:
            continue
        elements = next((c for c in node.children if c.type == "command_elements"), None)
        items = tuple(c for c in elements.children if c.type != "command_argument_sep") if elements else ()
        previous = node.prev_sibling
        found.append(
            Call(
                name_node.text.decode(),
                node,
                node.start_point[0] + 1,
                previous is not None and previous.type == "|",
                editions(node),
                tuple((c, _after_colon(c)) for c in items),
            )
        )
    return found


def _after_colon(item) -> bool:
    """True for a value written as -Name:value (the separator before it is ':')."""
    sep = item.prev_sibling
    return sep is not None and sep.type == "command_argument_sep" and sep.text.decode() == ":"


def is_native(call: Call) -> bool:
    """A program rather than a command: invoked with & on an expression, or named by a path or .exe."""
    text = call.name.strip("'\"")
    return call.node.children[0].type == "command_invocation_operator" or "\\" in text or text.lower().endswith(".exe")


# -- binding ------------------------------------------------------------------------------
def _resolve(signature: Signature, written: str) -> tuple[Parameter | None, str | None]:
    lowered = written.lower()
    for p in signature.parameters:
        if p.name.lower() == lowered or lowered in (a.lower() for a in p.aliases):
            return p, None
    matches = {
        p
        for p in signature.parameters
        if p.name.lower().startswith(lowered) or any(a.lower().startswith(lowered) for a in p.aliases)
    }
    if len(matches) == 1:
        return matches.pop(), None
    if matches:
        return None, f"-{written} is ambiguous: {', '.join(sorted(p.name for p in matches))}"
    return None, f"-{written} is no parameter of {signature.name} ({signature.source})"


def _boolean_like(node) -> bool:
    """What a switch takes after a colon: $true, $false, a number, or an expression that may be one."""
    text = node.text.decode()
    if any(n.type in ("string_literal", "generic_token") for n in pwsh.walk(node)) and not text.startswith("("):
        return False
    return True


def bind(call: Call, signature: Signature) -> list[str]:
    """Why PowerShell could not bind this call to the signature; [] when it can."""
    problems, named, positional = [], {}, []
    items = list(call.elements)
    i = 0
    while i < len(items):
        node, _ = items[i]
        if node.type == "command_parameter":
            written = node.text.decode().lstrip("-").rstrip(":")
            parameter, problem = _resolve(signature, written)
            if problem:
                problems.append(problem)
                i += 1
                continue
            if parameter.name in named:
                problems.append(f"-{parameter.name} is given twice")
            value = None
            follows = items[i + 1] if i + 1 < len(items) else None
            if follows is not None and follows[1]:  # -Name:value
                value = follows[0]
                i += 2
                if parameter.switch and not _boolean_like(value):
                    problems.append(
                        f"-{parameter.name} is a switch: it takes $true, $false or a number, not {value.text.decode()}"
                    )
            elif parameter.switch:
                i += 1
                if follows is not None and follows[0].text.decode().lower() in ("$true", "$false"):
                    problems.append(
                        f"-{parameter.name} is a switch: {follows[0].text.decode()} after it is not "
                        f"its value (write -{parameter.name}:{follows[0].text.decode()})"
                    )
            else:
                if follows is None or follows[0].type == "command_parameter":
                    problems.append(f"-{parameter.name} needs a value")
                    i += 1
                else:
                    value = follows[0]
                    i += 2
            named[parameter.name] = (parameter, value)
            if value is not None and parameter.type in ENCODING_TYPES and value.type in ("generic_token",):
                if value.text.decode().lower() not in ENCODINGS_BOTH:
                    problems.append(f"-Encoding {value.text.decode()} is not a value both editions take")
        elif node.text.decode().startswith("@") and node.type in ("unary_expression", "variable"):
            # Splatted: the keys of the hashtable literal assigned to that variable bind by name.
            for key in splatted_keys(node):
                parameter, problem = _resolve(signature, key)
                if problem:
                    problems.append(f"{problem} (splatted from {node.text.decode()})")
                else:
                    named[parameter.name] = (parameter, None)
            i += 1
        else:
            positional.append(node)
            i += 1
    if problems:
        return problems
    candidates = [s for s in signature.sets if all(p.in_set(s) for p, _ in named.values())]
    if not candidates:
        return [
            f"{', '.join('-' + n for n in named)} are in no one parameter set of {signature.name} "
            f"(sets: {', '.join(signature.sets)})"
        ]
    reasons = []
    for set_name in candidates:
        slots = sorted(
            (p.position_in(set_name), p.name)
            for p in signature.parameters
            if p.in_set(set_name) and p.position_in(set_name) is not None and p.name not in named
        )
        if len(positional) > len(slots):
            extra = positional[len(slots)].text.decode()[:40]
            reasons.append(f"set {set_name}: no position left for {extra!r}")
            continue
        bound = set(named) | {name for _, name in slots[: len(positional)]}
        missing = [
            p.name
            for p in signature.parameters
            if p.in_set(set_name) and p.required_in(set_name) and p.name not in bound
        ]
        if missing and not (call.piped and len(missing) == 1):
            reasons.append(f"set {set_name}: mandatory {', '.join('-' + m for m in missing)} not given")
            continue
        return []
    return [f"{signature.name} cannot be bound ({'; '.join(reasons)})"]


def splatted_keys(node) -> list[str]:
    """The keys of ``@name``'s hashtable: the literal last assigned to ``$name`` before the call, in
    the same function (or the script); [] when there is none to read (an array, a value built
    otherwise), which then binds nothing by name."""
    name = node.text.decode()[1:].lower()
    scope = node.parent
    while scope is not None and scope.type not in ("function_statement", "program"):
        scope = scope.parent
    keys: list[str] = []
    for assignment in pwsh.walk(scope):
        if assignment.type != "assignment_expression" or assignment.start_byte > node.start_byte:
            continue
        if assignment.children[0].text.decode().strip().lower() != "$" + name:
            continue
        literal = next((n for n in pwsh.walk(assignment.children[-1]) if n.type == "hash_literal_expression"), None)
        keys = []
        if literal is not None:
            keys = [n.text.decode().strip("'\"") for n in pwsh.walk(literal) if n.type == "key_expression"]
    return keys
