"""The .NET check (pstypes.Checker) extended to values read out of a hashtable built by a literal.

Why: the scripts keep most of their values in hashtables - each script's values block
``$Bundle = @{ ... }``, which the engine's Initialize-GenBundle turns into module variables
(``$script:InstallDir`` and so on, by Set-Variable), the engine's ``$Run = @{}`` of one run,
``[ordered]@{}`` receipts and ``[pscustomobject]@{}`` records. pstypes.Checker gives a hash
literal no type, so ``$Bundle.BundleName.Contains('x', [StringComparison]::Ordinal)`` - an
overload of .NET Core 2.1+ that Windows PowerShell 5.1 (.NET Framework 4.8) does not have, and
that fails only there, at run time - passed unchecked, as did any call on ``$BundleName`` in the
engine.

Here a hash literal is a value of its own (HashValue): the Hashtable (OrderedDictionary for
``[ordered]``, PowerShell's PSCustomObject for ``[pscustomobject]``) that it makes, and its
entries. ``$h.Key`` and ``$h['Key']`` give the entry's type, when the script fixes it in every
place that sets the key: the literal, ``$h.Key = ...``, ``$h['Key'] = ...``, ``$h.Add('Key', ...)``
(on ``$h`` or any value of the same literal: a copy in another variable, a parameter every call
passes it to). The entries' values are typed as any value is, and a few more forms are typed
here: string literals (System.String), integer and real literals, Join-Path and Split-Path
(System.String; not with -Resolve, which may give several). The values a script hands the
engine (its values block, and what it adds to it for Initialize-GenBundle) are given to the
engine's checker as the engine's module variables, read by its functions (not by its top-level
code, which runs before Initialize-GenBundle). A .NET collection whose elements have no declared
type (``ICollection``, a Hashtable's ``.Values``) gives its elements no type, where pstypes gave
them the collection's own.

What it does not do, on purpose: a key set under a name the script computes (``$h[$name] =``,
``.Add($name, ...)``) makes every entry of that literal untyped, since it could be any of them;
an entry set to values of two types, or to one the script does not fix, is untyped; a value
that leaves the script's sight (a hashtable passed to a cmdlet, merged with ``+``, piped) keeps
its entries' types only where the literal and the writes seen say so (Add-Member, a write
through ``.psobject`` or through a variable that holds it untyped are not seen). A parameter of
a function that shares a value's name reads the parameter, not the value. Only the number of
arguments is judged, as for every other call (a Core-only overload that takes as many arguments
as one of Framework's, whose types PowerShell converts, is not found: ``.Split(':', 2)`` binds
Split(char[], int) in 5.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tree_sitter import Node, Tree

from . import netref, pstypes
from .pwsh import walk as _walk

# What a type literal before a hash literal makes of it.
HASH_CASTS = {
    "hashtable": "System.Collections.Hashtable",
    "system.collections.hashtable": "System.Collections.Hashtable",
    "ordered": "System.Collections.Specialized.OrderedDictionary",
    "pscustomobject": "System.Management.Automation.PSCustomObject",
}
STRING = pstypes.Value("net", "System.String")
STRING_NODES = frozenset(
    {
        "string_literal",
        "verbatim_string_characters",
        "expandable_string_literal",
        "verbatim_here_string_characters",
        "expandable_here_string_literal",
    }
)
WRAPPERS = ("pipeline", "pipeline_chain", "unary_expression", "assignment_value", "left_assignment_expression")
# Cmdlets that write one System.String for one path (their reference pages' Outputs); -Resolve
# makes them write each path the wildcard matches, so a call with it is not typed.
STRING_COMMANDS = frozenset({"join-path", "split-path"})


@dataclass(frozen=True)
class HashValue(pstypes.Value):
    """The value a hash literal makes: its .NET type (``name``) and the literal (``at``: its start byte)."""

    at: int = -1


def _text(node: Node) -> str:
    return (node.text or b"").decode()


def unwrapped(node: Node) -> Node:
    """``node`` without the pipeline, pipeline chain and operator-less unary nodes around one expression."""
    while node.type in WRAPPERS and (len(node.named_children) == 1 and node.child_count == 1):
        node = node.named_children[0]
    return node


def literal_key(node: Node | None) -> str | None:
    """A hash key or index written as a bare name, a number or a string without variables, lowercase."""
    if node is None:
        return None
    if node.type == "key_expression" and node.named_children:
        node = node.named_children[0]
        if node.type == "simple_name":
            return _text(node).lower()
    node = unwrapped(node)
    text = _text(node).strip()
    if node.type == "integer_literal":
        return text.lower()
    if node.type == "string_literal" and node.named_children:
        inner = node.named_children[0]
        if inner.type == "verbatim_string_characters":
            return text[1:-1].replace("''", "'").lower()
        if inner.type == "expandable_string_literal" and not inner.named_children and "`" not in text:
            return text[1:-1].lower()
    return None


def entries(literal: Node) -> list[Node]:
    """A hash literal's own entries (not a nested literal's)."""
    body = next((c for c in literal.children if c.type == "hash_literal_body"), None)
    return [c for c in body.children if c.type == "hash_entry"] if body is not None else []


def entry_value(entry: Node) -> Node | None:
    """A hash entry's value (the pipeline after its ``=``)."""
    return next((c for c in entry.children if c.type == "pipeline"), None)


def _member_parts(node: Node) -> tuple[Node, bool, str | None]:
    """(receiver, static?, member name) of ``a.b``, ``a.b()``, ``[T]::b``, as pstypes reads them."""
    name = next((c for c in node.children if c.type == "member_name"), None)
    static = any(c.type == "::" for c in node.children)
    if name is None or name.child_count and name.children[0].type != "simple_name":
        return node.children[0], static, None
    return node.children[0], static, _text(name)


def _compound(assignment: Node) -> bool:
    """``+=``, ``-=`` and the like: what they make depends on the value before (an array stays one)."""
    operator = next((c for c in assignment.children if c.type == "assignment_operator"), None)
    return operator is not None and _text(operator).strip() != "="


INTEGER = re.compile(r"(0x[0-9a-f]+|[0-9]+)(l?)(kb|mb|gb|tb|pb)?")
MULTIPLIERS = {"": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40, "pb": 2**50}


def _integer(text: str) -> pstypes.Value | None:
    """An integer literal's type in Windows PowerShell 5.1 (about_Numeric_Literals): Int32 when it
    fits (a hexadecimal one up to 0xFFFFFFFF), else Int64; Int64 with the ``l`` suffix. The suffixes
    of PowerShell 7 (u, y, s, n...) are not typed."""
    found = INTEGER.fullmatch(text.strip().lower())
    if found is None:
        return None
    digits, long, multiplier = found.groups()
    value = (int(digits, 16) if digits.startswith("0x") else int(digits)) * MULTIPLIERS[multiplier or ""]
    fits = value <= 0xFFFFFFFF if digits.startswith("0x") and not multiplier else value < 2**31
    return pstypes.Value("net", "System.Int32" if fits and not long else "System.Int64")


@dataclass
class _Write:
    """``receiver.Key = value``, ``receiver['Key'] = value`` or ``receiver.Add('Key', value)``."""

    receiver: Node
    key: str | None  # None: a key the script computes
    value: Node | None


class HashChecker(pstypes.Checker):
    """pstypes.Checker with hash literals, their entries and the bundle's values typed (see the module)."""

    def __init__(
        self,
        tree: Tree,
        ref: netref.NetRef,
        cim: dict[str, Any],
        loaded: frozenset[str],
        values: Mapping[str, pstypes.Value] | None = None,
    ) -> None:
        super().__init__(tree, ref, cim, loaded)
        self.values = {name.lower(): value for name, value in (values or {}).items()}
        self.literals = {n.start_byte: n for n in self.nodes if n.type == "hash_literal_expression"}
        self.writes = list(self._writes())
        self.declared = self._declared_parameters()
        self._resolving: set[tuple[int, str]] = set()
        self.ran = False

    def run(self) -> list[str]:
        self.ran = True
        problems: list[str] = super().run()
        return problems

    # -- what the script writes into hashtables -------------------------------------------------
    def _writes(self) -> Iterator[_Write]:
        for node in self.nodes:
            if node.type == "assignment_expression":
                target = unwrapped(node.children[0])
                value = node.children[-1]  # a += counts as its right side: all the types must agree
                if target.type == "member_access" and not any(c.type == "::" for c in target.children):
                    name = next((c for c in target.children if c.type == "member_name"), None)
                    key = _text(name).lower() if name is not None and name.children[0].type == "simple_name" else None
                    yield _Write(target.children[0], key, value)
                elif target.type == "element_access":
                    index = next((c for c in target.children[1:] if c.is_named), None)
                    yield _Write(target.children[0], literal_key(index), value)
            elif node.type == "invocation_expression":
                member = next((c for c in node.children if c.type == "member_name"), None)
                if member is None or _text(member).lower() not in ("add", "set_item"):
                    continue
                arguments = next((c for c in node.children if c.type == "argument_list"), None)
                inner = (
                    next((c for c in arguments.children if c.type == "argument_expression_list"), None)
                    if arguments
                    else None
                )
                parts = [c for c in inner.children if c.type == "argument_expression"] if inner is not None else []
                if len(parts) == 2:
                    yield _Write(node.children[0], literal_key(parts[0]), parts[1])

    def _declared_parameters(self) -> set[tuple[str, str]]:
        """(function, parameter) of every parameter a function declares, lowercase."""
        found = set()
        for node in self.nodes:
            if node.type == "script_parameter":
                variable = next((n for n in _walk(node) if n.type == "variable"), None)
                function = self.scope(node)
                if variable is not None and function:
                    found.add((function, _text(variable)[1:].lower()))
        return found

    # -- typing ---------------------------------------------------------------------------------
    def _collect_assignments(self) -> None:
        """The script's assignments; then the values a script hands over, as module variables that
        Initialize-GenBundle sets after the module's own code ran (after its last byte)."""
        super()._collect_assignments()
        compound = {n.start_byte for n in self.nodes if n.type == "assignment_expression" and _compound(n)}
        for key, assigned in self.assignments.items():
            kept: list[tuple[int, pstypes.Value | None]] = []
            for at, value in assigned:
                if at in compound:  # $a += $b keeps $a's type only when $b has it too (@() += 'x' is no string)
                    value = value if kept and kept[-1][1] == value else None
                kept.append((at, value))
            self.assignments[key] = kept
        after = self.root.end_byte + 1
        for name, value in self.values.items():
            self.assignments.setdefault(("", name), []).append((after, value))

    def variable(self, node: Node) -> pstypes.Value | None:
        name = _text(node)[1:].lower().split(":")[-1]
        scope = self.scope(node)
        if name in self.values and (scope, name) in self.declared and (scope, name) not in self.params:
            own = [at for at, _ in self.assignments.get((scope, name), []) if at < node.start_byte]
            if not own:
                return None  # the parameter, not the bundle's value of that name
        found: pstypes.Value | None = super().variable(node)
        return found

    def type_of(self, node: Node | None) -> pstypes.Value | None:
        if node is None:
            return None
        kind = node.type
        if kind in STRING_NODES:
            return STRING
        if kind == "integer_literal":
            return _integer(_text(node))
        if kind == "real_literal":
            return pstypes.Value("net", "System.Decimal" if _text(node).lower().endswith("d") else "System.Double")
        if kind == "hash_literal_expression":
            return HashValue("net", "System.Collections.Hashtable", at=node.start_byte)
        if kind == "cast_expression":
            made = self._hash_cast(node)
            if made is not None:
                return made
        if kind == "element_access":
            receiver = self.type_of(node.children[0])
            if isinstance(receiver, HashValue):
                index = next((c for c in node.children[1:] if c.is_named), None)
                key = literal_key(index)
                if key is not None:
                    return self.entry(receiver, key)[1]
        if kind == "command":
            name = next((c for c in node.children if c.type == "command_name"), None)
            if (
                name is not None
                and _text(name).lower() in STRING_COMMANDS
                and not re.search(r"\s-resolve\b", _text(node), re.IGNORECASE)
            ):
                return STRING
        found: pstypes.Value | None = super().type_of(node)
        return found

    def element(self, value: pstypes.Value | None) -> pstypes.Value | None:
        """As pstypes.Checker's, but a .NET collection whose element type nothing says (ICollection,
        a Hashtable's .Values) gives an unknown element, not itself."""
        found: pstypes.Value | None = super().element(value)
        if found is None or found != value or found.kind != "net" or found.name == "System.String":
            return found
        resolved = self.ref.resolve(found.name)
        if resolved is not None and any(
            "System.Collections.IEnumerable" in (t.full_name, *t.interfaces) for t in resolved._lineage()
        ):
            return None
        return found

    def _hash_cast(self, node: Node) -> HashValue | None:
        """``[ordered]@{}``, ``[hashtable]@{}``, ``[pscustomobject]@{}``, ``[pscustomobject][ordered]@{}``."""
        literal = next((c for c in node.children if c.type == "type_literal"), None)
        made = HASH_CASTS.get(_text(literal)[1:-1].strip().lower()) if literal is not None else None
        if made is None:
            return None
        operand = unwrapped(node.children[-1])
        if operand.type == "expression_with_unary_operator" and operand.named_children:
            operand = operand.named_children[0]
        inner = self.type_of(operand)
        return HashValue("net", made, at=inner.at) if isinstance(inner, HashValue) else None

    def _member_type(self, node: Node) -> pstypes.Value | None:
        """``$h.Key``: the entry's type, when the literal or a write names the key; else the
        Hashtable's own property (``.Keys``, ``.Count``)."""
        receiver, static, member = _member_parts(node)
        if member is not None and not static and node.type == "member_access":
            value = self.type_of(receiver)
            if isinstance(value, HashValue):
                known, entry = self.entry(value, member.lower())
                if known or value.name.endswith("PSCustomObject"):
                    return entry
        found: pstypes.Value | None = super()._member_type(node)
        return found

    def entry(self, table: HashValue, key: str) -> tuple[bool, pstypes.Value | None]:
        """(whether the script sets ``key`` in this table, the one type every place that sets it gives)."""
        literal = self.literals.get(table.at)
        if literal is None or (table.at, key) in self._resolving:
            return False, None
        self._resolving.add((table.at, key))
        try:
            values: list[Node | None] = []
            for entry in entries(literal):
                name = literal_key(entry.children[0])
                if name is None:
                    return True, None  # a computed key may be this one
                if name == key:
                    values.append(entry_value(entry))
            for write in self.writes:
                if write.key is not None and write.key != key:
                    continue
                owner = self.type_of(write.receiver)
                if not isinstance(owner, HashValue) or owner.at != table.at:
                    continue
                if write.key is None:
                    return True, None  # a computed key may be this one
                values.append(write.value)
            if not values:
                return False, None
            types = {self.type_of(value) for value in values}
            return True, types.pop() if len(types) == 1 else None
        finally:
            self._resolving.discard((table.at, key))


def values_block(checker: HashChecker) -> dict[str, pstypes.Value | None]:
    """The values a script hands the engine, each with its type or None: the keys of its values
    block (``$Bundle = @{...}``) and of a literal added to it (``$Bundle + @{ ScriptName = ... }``,
    Initialize-GenBundle's -Values)."""
    if not checker.ran:
        checker.run()
    found: dict[str, pstypes.Value | None] = {}
    for node in checker.nodes:
        literal = None
        if node.type == "assignment_expression" and _text(node.children[0]).strip().lower() == "$bundle":
            literal = unwrapped(node.children[-1])
        elif node.type == "additive_expression" and _text(node.children[0]).strip().lower() == "$bundle":
            literal = unwrapped(node.children[-1])
        table = checker.type_of(literal) if literal is not None else None
        if isinstance(table, HashValue):
            for entry in entries(checker.literals[table.at]):
                key = literal_key(entry.children[0])
                if key is not None and key not in found:
                    found[key] = checker.entry(table, key)[1]
    return found


def bundle_values(blocks: Iterable[Mapping[str, pstypes.Value | None]]) -> dict[str, pstypes.Value]:
    """What the engine may take each value for: the one type every script that sets it gives it
    (a value one script leaves untyped is untyped for all)."""
    seen: dict[str, set[pstypes.Value | None]] = {}
    for block in blocks:
        for key, value in block.items():
            seen.setdefault(key, set()).add(value)
    found = {key: types.pop() for key, types in seen.items() if len(types) == 1 and None not in types}
    # A hash literal's entries are the script's: the engine sees a Hashtable (its bytes are not the engine's).
    return {key: pstypes.Value(v.kind, v.name, v.many) for key, v in found.items() if v is not None}
