"""PowerShell checks on a parse tree (tree-sitter), not on strings."""

from __future__ import annotations

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
        strings = [n for n in walk(value) if n.type == "verbatim_string_characters"]
        env = [n for n in walk(value) if n.type == "variable" and n.text.decode().lower().startswith("$env:")]
        if env and len(strings) == 1:
            result[name] = (env[0].text.decode()[5:], decode_verbatim(strings[0].text.decode()))
        elif len(strings) == 1 and value.text.decode().strip() == strings[0].text.decode():
            result[name] = decode_verbatim(strings[0].text.decode())
        else:
            result[name] = value.text.decode()
    return result
