"""A script as it runs: its steps, each call of one of the engine's step functions replaced by
that function's body, then the engine's functions and constants.

install.ps1, uninstall.ps1 and detect.ps1 hold a bundle's values and call the engine's
functions in order; the engine (gen-bundle-<version>.psm1) holds what each step does. The checks
that follow the order of what a script does (nothing written before the preflight ends, the
new environment before the launcher that points at it...) read this view of the two files
together, as the run meets them. One level of steps is put in place, as the scripts call them.
"""

from __future__ import annotations

from . import pwsh


def engine_name(files: dict[str, bytes]) -> str:
    (name,) = [name for name in files if name.endswith(".psm1")]
    return name


def engine_functions(engine_tree) -> dict[str, object]:
    """The engine's functions, by lower-case name."""
    found = {}
    for node in pwsh.walk(engine_tree.root_node):
        if node.type == "function_statement" and pwsh._enclosing_function(node) is None:
            name = next(c for c in node.children if c.type == "function_name").text.decode().lower()
            found[name] = node
    return found


def body_of(function) -> str:
    """A function's statements without its braces and its own param() block."""
    text = function.text.decode()
    body = text[text.index("{") + 1 : text.rindex("}")]
    name = next(c for c in function.children if c.type == "function_name").text.decode().lower()
    block = next(
        (n for n in pwsh.walk(function) if n.type == "param_block" and pwsh._enclosing_function(n) == name), None
    )
    if block is not None:
        body = body.replace(block.text.decode(), "", 1)
    return body


def inlined(files: dict[str, bytes], script: str, grammar) -> bytes:
    """The text of ``script`` with its steps in place, then the engine's text."""
    engine = pwsh.script_text(files[engine_name(files)])
    steps = engine_functions(grammar.parse(engine))
    source = pwsh.script_text(files[script]).decode("utf-8")
    out = []
    for line in source.split("\r\n"):
        words = line.strip().split()
        name = words[0].lower() if words else ""
        if name in steps and line.startswith("    ") and not line.startswith("     "):
            out.append(body_of(steps[name]).strip("\r\n"))
        else:
            out.append(line)
    return ("\r\n".join(out) + "\r\n").encode("utf-8") + engine
