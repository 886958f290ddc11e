"""Build time: every template compiled ahead of time into one module of the wheel
(generator/compiled_templates.py).

The wheel build hook calls compile_all; generator/compiled.py loads the module at run time.
Compiling the templates is most of a run's time (about 120 ms of 280).
"""

from __future__ import annotations

from pathlib import Path

from .render import outputs
from .templating import is_plain_name, jinja_environment


def _names_by_language() -> tuple[dict[str, set[str]], set[str]]:
    """Each language's templates a run renders (the outputs written in it but the shared ones,
    which the module carries rendered, and what they include), and the plain partials they paste.

    A partial is named by a literal in ``plain('...')``: one named any other way could not be
    found here, so it is refused at build time rather than read from a file at run time.
    """
    import jinja2.meta
    from jinja2 import nodes

    from .spec import build_spec

    spec = build_spec(ip="127.0.0.13", name="py")
    names: dict[str, set[str]] = {}
    for output in outputs(spec).values():
        if not output.shared:
            names.setdefault(output.language, set()).add(output.template)
    partials: set[str] = set()
    for language, found in names.items():
        jinja = jinja_environment(language, compiled=False)
        todo = list(found)
        while todo:
            name = todo.pop()
            assert jinja.loader is not None  # the file system loader: compiled=False
            tree = jinja.parse(jinja.loader.get_source(jinja, name)[0])
            for call in tree.find_all(nodes.Call):
                if isinstance(call.node, nodes.Name) and call.node.name == "plain":
                    if len(call.args) != 1 or not isinstance(call.args[0], nodes.Const):
                        raise ValueError(f"{name}: plain() takes one literal partial name")
                    if not is_plain_name(call.args[0].value, language):
                        raise ValueError(f"{name}: plain({call.args[0].value!r}) is not a {language} partial")
                    partials.add(call.args[0].value)
            for included in jinja2.meta.find_referenced_templates(tree):
                if included and included not in found:
                    found.add(included)
                    todo.append(included)
    return names, partials


def compile_all(target: Path) -> None:
    """Write ``target``: one Python module holding every template, compiled for its language.

    Each template becomes a function of its environment that returns the namespace a compiled
    template module holds (name, root, blocks, debug_info): Jinja's own compiled code, indented
    into the function, so that ``environment`` is the function's argument.
    """
    import jinja2

    imports: set[str] = set()
    functions: list[str] = []
    table: dict[str, dict[str, str]] = {}
    by_language, pasted = _names_by_language()
    for language, names in sorted(by_language.items()):
        jinja = jinja_environment(language, compiled=False)
        assert jinja.loader is not None
        for name in sorted(names):
            source = jinja.loader.get_source(jinja, name)[0]
            code = jinja.compile(source, name, name, raw=True, defer_init=True)
            body = []
            for line in code.splitlines():
                if line.startswith("from jinja2.runtime import "):
                    imports.update(part.strip() for part in line.removeprefix("from jinja2.runtime import ").split(","))
                elif line.startswith(("from ", "import ")):
                    raise ValueError(f"{name}: compiled code imports {line!r}, which the one module does not carry")
                else:
                    body.append(("    " + line) if line else "")
            function = f"_t{len(functions)}"
            functions.append(
                f"def {function}(environment):\n" + "\n".join(body) + "\n"
                '    return {"name": name, "blocks": blocks, "root": root, "debug_info": debug_info, '
                '"__file__": __file__}\n'
            )
            table.setdefault(language, {})[name] = function
    entries = ", ".join(
        f"{language!r}: {{" + ", ".join(f"{name!r}: {function}" for name, function in sorted(names.items())) + "}"
        for language, names in sorted(table.items())
    )
    # The plain partials the rendered templates paste, as plain() would read them, and the files
    # every bundle of this version shares, rendered: a run reads no template file and renders no
    # engine (none of the engine's source, templates/engine/, is among the partials: only its build reads it).
    from . import __version__
    from .render import ENGINE_OUTPUT, render_shared
    from .templating import templates_dir

    root = templates_dir()
    partials = {name: (root / name).read_text(encoding="utf-8") for name in sorted(pasted)}
    shared = {(ENGINE_OUTPUT.template, __version__): render_shared(ENGINE_OUTPUT, __version__, compiled=False)}
    text = (
        '"""Every template of gen-bundle, compiled by Jinja when the wheel was built (generator/precompile.py)."""\n'
        f"from jinja2.runtime import {', '.join(sorted(imports))}\n\n"
        f"JINJA_VERSION = {jinja2.__version__!r}\n\n\n"
        + "\n\n".join(functions)
        + f"\n\nTEMPLATES = {{{entries}}}\n"
        + f"PARTIALS = {partials!r}\n"
        + f"SHARED = {shared!r}\n"
    )
    compile(text, str(target), "exec")  # a syntax error here, not at the first run
    target.write_text(text, encoding="utf-8")
