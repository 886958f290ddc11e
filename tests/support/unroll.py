"""A variable assigned a statement's output, then used as an array that the output may have unrolled.

Why: what an ``if``, ``switch``, ``foreach``, ``for``, ``while``, ``do`` or ``try`` statement, a
``& { ... }`` script block or one of the script's own functions gives an assignment is its
pipeline output, and PowerShell unrolls every collection written there: an empty array becomes
``$null``, a one-element array that element, a byte[] an object[]. ``$bytes = if ($c) {
$engineBytes } else { $other }`` holds no array when $engineBytes is empty (``$bytes.Length``
then throws under Set-StrictMode 3, ``[IO.File]::WriteAllBytes($p, $bytes)`` gets $null), and a
function's one result is no array (its ``.Count`` throws in Windows PowerShell 5.1 under
Set-StrictMode, PowerShell issue 2798; ``$lines[0]`` of a one-line result is its first
character). test_script_faults.unrolled_arrays finds such an assignment only when an
array-making call (``ReadAllBytes``, ``.ToArray()``) stands in the statement itself; this finds
it from the other end, from the variable's use, whatever the statement holds.

An assignment ``$x = <statement, & { } or own function>`` is reported when, after it and before
``$x`` is assigned again in the same function (or at the script's top level), ``$x`` is used as
an array - ``$x.Count``, ``$x[i]`` (an index that is no string: ``$x['key']`` reads a hashtable),
``$x`` given where a .NET method takes a byte[] (BYTE_ARRAY_ARGUMENTS) - and what the statement
writes may be a collection; ``$x.Length`` counts only when the statement writes a value that is
one (a string's ``.Length`` is its own).

What the statement writes is read from its branches (and a function's ``return`` and bare
expressions): a literal, ``$true``/``$false``/``$null``, a hash literal, a cast to a type that is
no collection, an arithmetic, -f, -join or comparison result, ``.Count``/``.Length``, a
string-making method, ``,$x`` (kept whole) are no collection; ``@(...)``, ``a, b``, a cast to an
array or list type, ``-split``, an array-making method (ARRAY_METHODS) are one, and so is a
variable assigned one of them anywhere in its function, or a parameter declared as an array; the
rest (a cmdlet's output, a property, a variable of unknown value) may be either, and so may what
writes several values (a loop, a switch, two outputs in a row), however small each is.

Not reported, on purpose: ``$x = @(...)`` and ``$x = [T[]]...`` or ``[T[]]$x = ...`` (wrapped:
the array is whole whatever the statement wrote); a use only through ``@($x)``, ``foreach ($i in
$x)`` or a pipeline (they take $null, one value and many alike); an assignment to a property
(``$Run.Lines = ...``); a plain ``$x`` read in another function, through PowerShell's dynamic
scope (``$script:x`` is followed); a use that comes
first in the text but runs after, through a loop; a cmdlet's output (``$x = Get-ChildItem``)
unless it reaches the variable through a statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Node, Tree

from .pwsh import walk as _walk

STATEMENTS = frozenset(
    {
        "if_statement",
        "switch_statement",
        "foreach_statement",
        "for_statement",
        "while_statement",
        "do_statement",
        "try_statement",
    }
)
# .NET methods (any case) with the position of a byte[] parameter; MemoryStream is its constructor.
BYTE_ARRAY_ARGUMENTS = {
    "getstring": 0,
    "getchars": 0,
    "getcharcount": 0,
    "computehash": 0,
    "tobase64string": 0,
    "writeallbytes": 1,
    "memorystream": 0,
}
ARRAY_METHODS = frozenset(
    {
        "readallbytes",
        "readalllines",
        "getbytes",
        "toarray",
        "split",
        "getfiles",
        "getdirectories",
        "getfilesystementries",
        "getaccessrules",
        "getvaluenames",
        "getsubkeynames",
        "getprocesses",
        "getprocessesbyname",
    }
)
STRING_METHODS = frozenset(
    {
        "tostring",
        "trim",
        "trimstart",
        "trimend",
        "substring",
        "replace",
        "tolower",
        "toupper",
        "tolowerinvariant",
        "toupperinvariant",
        "padleft",
        "padright",
        "join",
        "format",
        "getstring",
        "combine",
        "getfullpath",
        "getfilename",
        "getfilenamewithoutextension",
        "getdirectoryname",
        "getextension",
        "gettemppath",
        "equals",
        "contains",
        "startswith",
        "endswith",
        "indexof",
        "lastindexof",
        "compare",
        "isnullorempty",
        "isnullorwhitespace",
        "exists",
        "newguid",
    }
)
# Cmdlets that write nothing to the output (or end the run).
SILENT_COMMANDS = frozenset(
    {
        "write-warning",
        "write-verbose",
        "write-host",
        "write-debug",
        "write-information",
        "write-error",
        "write-progress",
        "out-null",
        "out-file",
        "set-content",
        "add-content",
        "remove-item",
        "set-variable",
        "start-sleep",
        "set-strictmode",
        "exit",
    }
)
SPLIT = frozenset({"-split", "-csplit", "-isplit"})
SCALAR_OPERATORS = frozenset({"-join", "-f", "-is", "-isnot"})
LOOPS = frozenset({"foreach_statement", "for_statement", "while_statement", "do_statement", "switch_statement"})
BLOCKS = frozenset({"statement_block", "statement_list", "script_block", "script_block_body"})
# Collection types by the end of their name: ArrayList, List[T], Collection[T], HashSet[T]...
COLLECTIONS = ("list", "collection", "hashset", "queue", "stack")
SCALAR, ARRAY, EITHER = "scalar", "array", "either"


def _text(node: Node) -> str:
    return (node.text or b"").decode()


def _unwrapped(node: Node) -> Node:
    """The one expression inside pipeline, chain, operator-less unary and parentheses nodes."""
    while True:
        named = [c for c in node.named_children if c.type != "comment"]
        if node.type in ("pipeline", "pipeline_chain", "assignment_value", "argument_expression") and len(named) == 1:
            node = named[0]
        elif node.type == "unary_expression" and node.child_count == 1:
            node = node.children[0]
        elif node.type == "parenthesized_expression" and len(named) == 1:
            node = named[0]
        else:
            return node


def _blocks(statement: Node) -> Iterator[Node]:
    """The blocks of a statement's branches (not its conditions, not a nested statement's blocks)."""
    for child in statement.children:
        if child.type == "statement_block":
            yield child
        elif child.type != "pipeline" and not child.type.endswith(("condition", "initializer", "iterator")):
            yield from _blocks(child)  # else, elseif, catch, finally clauses; switch clauses


def _function(node: Node) -> str:
    """The name of the function ``node`` stands in, lowercase; '' at the script's top level."""
    parent = node.parent
    while parent is not None:
        if parent.type == "function_statement":
            name = next((c for c in parent.children if c.type == "function_name"), None)
            return _text(name).lower() if name is not None else ""
        parent = parent.parent
    return ""


def _variable(node: Node) -> tuple[str, bool]:
    """A variable's name, lowercase, without $ and scope; and whether it names the script scope."""
    name = _text(node).lstrip("$@").strip("{}").lower()
    for prefix in ("script:", "global:", "local:", "private:"):
        if name.startswith(prefix):
            return name[len(prefix) :], prefix in ("script:", "global:")
    return name, False


def _command_name(node: Node) -> str | None:
    name = next((c for c in node.children if c.type == "command_name"), None)
    return _text(name).strip("'\"").rsplit("\\", 1)[-1].lower() if name is not None else None


def _type_class(literal: str) -> str:
    """What a cast to this type makes: an array or a list (which the pipeline unrolls), or one value."""
    name = re.sub(r"\[.*$", "", literal.strip()[1:-1].strip()).rsplit(".", 1)[-1].lower()
    if literal.strip().endswith("[]]") or name == "array" or name.endswith(COLLECTIONS):
        return ARRAY
    return SCALAR


@dataclass(frozen=True)
class _Assignment:
    node: Node
    value: Node
    declared: str | None  # [T]$x = ...: what the type makes of any value


class Unrolling:
    """The assignments of one script, its functions' outputs and what each value is (see the module)."""

    def __init__(self, tree: Tree) -> None:
        self.root = tree.root_node
        self.nodes = list(_walk(self.root))
        self.functions = {
            _text(name).lower(): node
            for node in self.nodes
            if node.type == "function_statement"
            for name in [next((c for c in node.children if c.type == "function_name"), None)]
            if name is not None
        }
        self.assigned: dict[tuple[str, str], list[_Assignment]] = {}
        self.parameters: dict[tuple[str, str], str] = {}
        self.loops: dict[tuple[str, str], list[int]] = {}  # foreach variables: where each loop starts
        for node in self.nodes:
            if node.type == "assignment_expression":
                target = (
                    _unwrapped(node.children[0].children[0]) if node.children[0].named_children else node.children[0]
                )
                declared = None
                if target.type == "expression_with_unary_operator" and target.named_children:
                    target = target.named_children[0]
                if target.type == "cast_expression":
                    literal = next((c for c in target.children if c.type == "type_literal"), None)
                    declared = _type_class(_text(literal)) if literal is not None else None
                    target = _unwrapped(target.children[-1])
                if target.type == "variable" and _variable(target)[0] != "null":
                    name, script = _variable(target)
                    key = ("" if script else _function(node), name)
                    self.assigned.setdefault(key, []).append(_Assignment(node, node.children[-1], declared))
            elif node.type == "foreach_statement":
                variable = next((c for c in node.children if c.type == "variable"), None)
                if variable is not None:
                    self.loops.setdefault((_function(node), _variable(variable)[0]), []).append(node.start_byte)
            elif node.type == "script_parameter":
                variable = next((c for c in node.children if c.type == "variable"), None)
                attributes = next((c for c in node.children if c.type == "attribute_list"), None)
                types = [n for n in _walk(attributes) if n.type == "type_literal"] if attributes is not None else []
                if variable is not None:
                    self.parameters[(_function(node), _variable(variable)[0])] = (
                        _type_class(_text(types[-1])) if types else EITHER
                    )

    # -- what a statement writes ---------------------------------------------------------------
    def outputs(self, node: Node) -> list[Node]:
        """The expressions a statement, block or function writes to the output: its pipelines that
        are no assignment, [void] cast or silent command, and its ``return`` values."""
        if node.type in STATEMENTS:
            return [o for block in _blocks(node) for o in self.outputs(block)]
        found: list[Node] = []
        for child in node.named_children:
            if child.type == "flow_control_statement":
                found += self.outputs_of(child)
            elif child.type == "pipeline":
                if self._writes(child):
                    found.append(child)
            elif child.type in STATEMENTS or child.type in BLOCKS:
                found += self.outputs(child)
        return found

    def written(self, node: Node, seen: frozenset[str] = frozenset()) -> str:
        """What a statement, block or function gives an assignment: ARRAY when it writes an array;
        EITHER when it may write a collection, or several values (a loop, a switch, two outputs in
        a row), which the assignment collects into an array only when there are two or more."""
        found = self._combined([self.kind(o, seen) for o in self.outputs(node)])
        return EITHER if found == SCALAR and self._many(node) else found

    def _many(self, node: Node) -> bool:
        """Whether ``node`` may write more than one value."""
        if node.type in LOOPS:
            return bool(self.outputs(node))
        if node.type in STATEMENTS:
            return any(self._many(block) for block in _blocks(node))
        count, returns = 0, False
        for child in node.named_children:
            if child.type == "flow_control_statement":
                returns = returns or bool(self.outputs_of(child))
            elif child.type == "pipeline":
                count += self._writes(child)
            elif child.type in STATEMENTS or child.type in BLOCKS:
                if self._many(child):
                    return True
                outputs = self.outputs(child)
                if any(o.parent is None or o.parent.type != "flow_control_statement" for o in outputs):
                    count += 1
                elif outputs:
                    returns = True
        return count + returns >= 2

    def outputs_of(self, statement: Node) -> list[Node]:
        """A ``return``'s value; nothing for ``break``, ``continue``, ``throw``, ``exit``."""
        value = next((c for c in statement.named_children if c.type == "pipeline"), None)
        return [value] if value is not None and _text(statement).lower().startswith("return") else []

    def _writes(self, pipeline: Node) -> bool:
        inner = _unwrapped(pipeline)
        if inner.type == "assignment_expression":
            return False
        if inner.type == "expression_with_unary_operator" and _text(inner).lower().startswith("[void]"):
            return False
        chain = next((c for c in pipeline.named_children if c.type == "pipeline_chain"), None)
        last = [c for c in chain.named_children if c.type == "command"][-1:] if chain is not None else []
        return not (last and _command_name(last[-1]) in SILENT_COMMANDS)

    def kind(self, node: Node, seen: frozenset[str] = frozenset()) -> str:  # noqa: C901 - one case per expression
        """SCALAR, ARRAY or EITHER: what an output expression may be (``seen``: the variables and
        functions being read, which a recursive one would read again)."""
        node = _unwrapped(node)
        kind = node.type
        if kind in STATEMENTS:
            return self.written(node, seen)
        if kind in ("string_literal", "integer_literal", "real_literal", "hash_literal_expression"):
            return SCALAR
        if kind in ("array_expression", "array_literal_expression"):
            return ARRAY
        if kind == "variable":
            return self._variable_kind(node, seen)
        if kind == "expression_with_unary_operator":
            cast = next((c for c in node.named_children if c.type == "cast_expression"), None)
            if cast is not None:
                return self.kind(cast, seen)
            return (
                ARRAY if node.children and node.children[0].type in SPLIT else SCALAR
            )  # -not, -join, ',' (kept whole)
        if kind == "cast_expression":
            literal = next((c for c in node.children if c.type == "type_literal"), None)
            return _type_class(_text(literal)) if literal is not None else EITHER
        if kind == "comparison_expression":
            operator = next((c for c in node.children if c.type == "comparison_operator"), None)
            text = _text(operator).lower() if operator is not None else ""
            if text in SPLIT:
                return ARRAY
            if text in SCALAR_OPERATORS:
                return SCALAR
            return ARRAY if self.kind(node.named_children[0], seen) == ARRAY else SCALAR  # an array's -eq filters it
        if kind in ("logical_expression", "bitwise_expression"):
            return SCALAR
        if kind in ("format_expression", "range_expression"):
            return SCALAR if kind == "format_expression" else ARRAY
        if kind in ("additive_expression", "multiplicative_expression"):
            return self.kind(node.named_children[0], seen)
        if kind == "member_access":
            member = next((c for c in node.children if c.type == "member_name"), None)
            return SCALAR if member is not None and _text(member).lower() in ("count", "length") else EITHER
        if kind == "invocation_expression":
            member = next((c for c in node.children if c.type == "member_name"), None)
            name = _text(member).lower() if member is not None else ""
            return ARRAY if name in ARRAY_METHODS else SCALAR if name in STRING_METHODS else EITHER
        if kind == "sub_expression":
            inner = next((c for c in node.named_children if c.type == "statement_list"), None)
            return self.written(inner, seen) if inner is not None else SCALAR
        if kind == "command":
            return self._command_kind(node, seen)
        if kind == "pipeline_chain":
            return EITHER  # a | b: what the last command writes, one value or many
        return EITHER

    def _command_kind(self, node: Node, seen: frozenset[str]) -> str:
        name = _command_name(node)
        if name is not None and name in self.functions:
            if f"function {name}" in seen:
                return EITHER
            seen = seen | {f"function {name}"}
            return self.written(self.functions[name], seen)
        if name is None:  # & { ... } / . { ... }
            block = next((n for n in _walk(node) if n.type == "script_block"), None)
            return self.written(block, seen) if block is not None else EITHER
        return SCALAR if name in SILENT_COMMANDS else EITHER

    def _variable_kind(self, node: Node, seen: frozenset[str]) -> str:
        name, script = _variable(node)
        if name in ("true", "false", "null"):
            return SCALAR
        scope = "" if script else _function(node)
        if (scope, name) in self.loops or f"{scope}:{name}" in seen:
            return EITHER
        seen = seen | {f"{scope}:{name}"}
        assignments = self.assigned.get((scope, name)) or (
            [] if (scope, name) in self.parameters else self.assigned.get(("", name), [])
        )
        kinds = [a.declared or self.kind(a.value, seen) for a in assignments]
        if (scope, name) in self.parameters:
            kinds.append(self.parameters[(scope, name)])
        return self._combined(kinds) if kinds else EITHER

    @staticmethod
    def _combined(kinds: list[str]) -> str:
        if ARRAY in kinds:
            return ARRAY
        return EITHER if EITHER in kinds else SCALAR

    # -- the rule ------------------------------------------------------------------------------
    def source(self, assignment: _Assignment) -> str | None:
        """What makes the assignment's value a pipeline's output: a statement, a script block, a function."""
        if assignment.declared == ARRAY:
            return None  # [T[]]$x = ...: the variable converts what it gets
        value = _unwrapped(assignment.value)
        if value.type in STATEMENTS:
            return value.type.replace("_statement", "")
        if value.type == "command":
            name = _command_name(value)
            if name is None and any(n.type == "script_block_expression" for n in _walk(value)):
                return "a script block"
            if name is not None and name in self.functions:
                return name
        return None

    def uses(self, assignment: _Assignment, kind: str) -> Iterator[tuple[Node, str]]:
        """The reads of the assigned variable as an array, until it is assigned again."""
        target = next(n for n in _walk(assignment.node.children[0]) if n.type == "variable")
        name, script = _variable(target)
        scope = "" if script else _function(assignment.node)
        start = assignment.node.end_byte
        later = [a.node.start_byte for a in self.assigned.get((scope, name), []) if a.node.start_byte >= start]
        later += [at for at in self.loops.get((scope, name), []) if at >= start]
        end = min(later, default=self.root.end_byte)
        for node in self.nodes:
            if node.type != "variable" or not start <= node.start_byte < end or _variable(node)[0] != name:
                continue
            if ("" if _variable(node)[1] else _function(node)) != scope:
                continue
            used = self._array_use(node, kind)
            if used is not None:
                yield node, used

    def _array_use(self, variable: Node, kind: str) -> str | None:
        node = variable
        while node.parent is not None and node.parent.type in ("unary_expression",) and node.parent.child_count == 1:
            node = node.parent
        parent = node.parent
        if parent is None:
            return None
        if parent.type == "member_access" and parent.children[0] == node:
            member = next((c for c in parent.children if c.type == "member_name"), None)
            name = _text(member).lower() if member is not None else ""
            if name == "count" and kind != SCALAR or name == "length" and kind == ARRAY:
                return _text(parent)
        if parent.type == "element_access" and parent.children[0] == node and kind != SCALAR:
            index = next((c for c in parent.children[1:] if c.is_named), None)
            if index is not None and _unwrapped(index).type != "string_literal":
                return _text(parent)
        if kind != SCALAR:
            return self._byte_array_argument(node)
        return None

    def _byte_array_argument(self, node: Node) -> str | None:
        argument = node.parent
        while argument is not None and argument.type != "argument_expression":
            if argument.type not in ("unary_expression", "parenthesized_expression", "pipeline", "pipeline_chain"):
                return None
            argument = argument.parent
        arguments = argument.parent if argument is not None else None
        call = arguments.parent.parent if arguments is not None and arguments.parent is not None else None
        if argument is None or arguments is None or call is None:
            return None
        position = [c for c in arguments.children if c.type == "argument_expression"].index(argument)
        if call.type == "invocation_expression":
            member = next((c for c in call.children if c.type == "member_name"), None)
            name = _text(member).lower() if member is not None else ""
            if name == "new":
                name = _text(call.children[0]).strip("[]").rsplit(".", 1)[-1].lower()
        elif call.type == "command_elements" and call.parent is not None and _command_name(call.parent) == "new-object":
            token = next((c for c in call.children if c.type == "generic_token"), None)
            name = _text(token).rsplit(".", 1)[-1].lower() if token is not None else ""
            call = call.parent
        else:
            return None
        if BYTE_ARRAY_ARGUMENTS.get(name) == position:
            return _text(call).splitlines()[0][:80]
        return None


def unrolled_outputs(tree: Tree) -> list[str]:
    """Assignments of a statement's, a script block's or a function's output to a variable then used
    as an array that the output may have unrolled (see the module): each with the first such use."""
    script = Unrolling(tree)
    found = []
    for assignments in script.assigned.values():
        for assignment in assignments:
            source = script.source(assignment)
            if source is None:
                continue
            kind = script.kind(assignment.value)
            use = next(script.uses(assignment, kind), None)
            if use is not None:
                line = assignment.node.start_point[0] + 1
                text = _text(assignment.node).splitlines()[0][:80]
                found.append(f"line {line}: {text} ({source}; then {use[1]} at line {use[0].start_point[0] + 1})")
    return sorted(found, key=lambda problem: int(problem.split(":")[0].split()[1]))
