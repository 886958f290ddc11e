"""Build time: every template compiled ahead of time into one module of the wheel
(generator/compiled_templates.py).

The wheel build hook calls compile_all; generator/compiled.py loads the module at run time.
Compiling the templates is most of a run's time (about 120 ms of 280).
"""

from __future__ import annotations

from pathlib import Path

from .render import jinja_environment, outputs


def _names_by_language() -> dict[str, set[str]]:
    """Each language's templates: the outputs written in it, and what they include."""
    import jinja2.meta

    from .spec import build_spec

    spec = build_spec(ip="127.0.0.13", name="py")
    names: dict[str, set[str]] = {}
    for output in outputs(spec).values():
        names.setdefault(output.language, set()).add(output.template)
    for language, found in names.items():
        jinja = jinja_environment(language, compiled=False)
        todo = list(found)
        while todo:
            assert jinja.loader is not None  # the file system loader: compiled=False
            source = jinja.loader.get_source(jinja, todo.pop())[0]
            for included in jinja2.meta.find_referenced_templates(jinja.parse(source)):
                if included and included not in found:
                    found.add(included)
                    todo.append(included)
    return names


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
    for language, names in sorted(_names_by_language().items()):
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
    # The plain partials, as plain() would read them, and the files every bundle of this version
    # shares, rendered: a run then reads no template file and renders no engine.
    from . import __version__
    from .render import ENGINE_OUTPUT, PLAIN_FOLDERS, render_shared, templates_dir

    root = templates_dir()
    partials = {
        f"{folder}/{path.name}": path.read_text(encoding="utf-8")
        for folder in sorted(PLAIN_FOLDERS.values())
        for path in sorted((root / folder).glob("*"))
        if path.suffix in (".ps1", ".py")
    }
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
