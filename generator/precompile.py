"""Templates compiled ahead of time, shipped in the wheel (generator/compiled/).

Compiling the templates is most of a run's time (about 120 ms of 280). The wheel carries
them compiled, once per output language with that language's environment, as Python
modules that pip byte-compiles at install: the first run after installation loads
bytecode, and the render stays pure (no cache is written at run time).

They are used only when they were compiled by the jinja2 version that runs them;
otherwise (a checkout, another jinja2) the templates are compiled as before.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

COMPILED = Path(__file__).resolve().parent / "compiled"


def _names_by_language() -> dict[str, set[str]]:
    """Each language's templates: the outputs written in it, and what they include."""
    import jinja2.meta

    from .render import environment, outputs
    from .spec import build_spec

    spec = build_spec(ip="127.0.0.13", name="py")
    names: dict[str, set[str]] = {}
    for output in outputs(spec).values():
        names.setdefault(output.language, set()).add(output.template)
    for language, found in names.items():
        env = environment(language, compiled=False)
        todo = list(found)
        while todo:
            source = env.loader.get_source(env, todo.pop())[0]
            for included in jinja2.meta.find_referenced_templates(env.parse(source)):
                if included and included not in found:
                    found.add(included)
                    todo.append(included)
    return names


def compile_all(target: Path) -> None:
    """Write target/<language>/tmpl_*.py for every template, and target/JINJA_VERSION."""
    import jinja2

    from .render import environment

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for language, names in sorted(_names_by_language().items()):
        env = environment(language, compiled=False)
        env.compile_templates(target / language, zip=None, filter_func=names.__contains__, ignore_errors=False)
    (target / "JINJA_VERSION").write_text(jinja2.__version__ + "\n", encoding="ascii")


def compiled_folder(language: str) -> Path | None:
    """The compiled templates of ``language``, when there are some for the running jinja2.

    Only an installed wheel has them, beside the templates it carries (generator/templates):
    in a checkout, where templates/ is edited, the templates are always compiled from source.
    """
    folder = COMPILED / language
    if not folder.is_dir() or not (COMPILED.parent / "templates").is_dir():
        return None
    import jinja2

    return folder if _compiled_for() == jinja2.__version__ else None


@functools.cache
def _compiled_for() -> str | None:
    """The jinja2 version the wheel's templates were compiled with (read once per run)."""
    try:
        return (COMPILED / "JINJA_VERSION").read_text(encoding="ascii").strip()
    except OSError:
        return None
