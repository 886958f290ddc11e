"""The Jinja side of the render: one environment per output language, its escaping filters,
the check that every value went through one, and the plain partials pasted as they are.

generator/render.py says which template makes which file and in which bytes; this module says
how a template may write a value at all.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import escape
from .figures import size, size_mb

if TYPE_CHECKING:
    from pathlib import Path

    import jinja2


# The filters of each output language. In every file but XML, a {{ }} must end in one
# of its language's filters, or the render fails (Environment.finalize): a value is
# escaped because the template says how, never because the author remembered to.
FILTERS: dict[str, dict[str, Callable[[Any], str]]] = {
    "bat": {"bat": escape.bat, "bat_text": escape.bat_text},
    "ps": {"ps": escape.ps, "ps_text": escape.ps_text},
    "py": {"py": escape.py, "py_text": escape.py_text},
    "md": {"md": escape.md, "md_text": escape.md_text, "md_code": escape.md_code, "md_mermaid": escape.md_mermaid},
    "hosts": {"hosts": escape.hosts},
    "xml": {},  # autoescaped by Jinja; control characters refused (escape.xml_value)
}


# The engine is no template: gen-bundle joins its source, templates/engine/ (generator/engine_source.py).


@functools.cache
def templates_dir() -> Path:
    """templates/ inside an installed wheel, else at the top of the checkout (looked up once).

    A render from the wheel reads no template file (generator/compiled.py) and does not ask; a
    checkout, the build and the tests do, and the commands that read a bundle back, which import
    pathlib anyway."""
    from pathlib import Path

    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "start.bat.j2").is_file():
            return candidate
    raise FileNotFoundError(f"gen-bundle's templates are missing (looked beside {here})")


class Escaped(str):
    """A value that went through a filter of ``language``: the only kind finalize lets through."""

    __slots__ = ("language",)
    language: str

    def __new__(cls, text: str, language: str) -> Escaped:
        self = super().__new__(cls, text)
        self.language = language
        return self


class UnescapedValue(ValueError):
    """A template writes a value without its file's escaping: a bug in the template."""


def _marked(function: Callable[[Any], str], language: str) -> Callable[[Any], Escaped]:
    def apply(value: Any) -> Escaped:
        return Escaped(function(value), language)

    apply.__name__ = function.__name__
    return apply


def _finalize(language: str) -> Callable[[Any], Any]:
    if language == "xml":
        return escape.xml_value

    def finalize(value: object) -> object:
        if isinstance(value, Escaped) and value.language == language:
            return value
        raise UnescapedValue(
            f"{value!r} is written into a {language} file without one of its filters "
            f"({', '.join(FILTERS[language])}): end the {{{{ }}}} with the one for its place"
        )

    return finalize


def jinja_environment(language: str, *, compiled: bool = True) -> jinja2.Environment:
    """The Jinja environment for one output language: its filters, and only its.

    Its templates come compiled from the wheel when it carries them for this jinja2
    (generator/compiled.py), else from templates/, compiled on use.
    """
    import jinja2  # imported here, not at module load: --help and --version stay fast

    loader: jinja2.BaseLoader | None = None
    if compiled:
        from .compiled import compiled_loader

        loader = compiled_loader(language)
    if loader is None:
        loader = jinja2.FileSystemLoader(str(templates_dir()))
    jinja = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=language == "xml",
        finalize=_finalize(language),
    )
    jinja.filters.update({name: _marked(function, language) for name, function in FILTERS[language].items()})
    jinja.filters["size"] = size  # a number of bytes as people say it; its result still needs a filter
    jinja.filters["size_mb"] = size_mb
    jinja.globals["plain"] = _plain_reader(language, compiled=compiled)
    return jinja


# The folder and suffix of plain partials, by the language of the files that paste them.
PLAIN_FOLDERS = {"ps": ("powershell", ".ps1"), "py": ("python", ".py")}


def is_plain_name(name: str, language: str) -> bool:
    """``<folder>/<stem><suffix>`` of ``language``'s partials, the stem a lowercase letter then
    lowercase letters, '_' and '-': no other folder, no '..', no other language's partial."""
    if language not in PLAIN_FOLDERS:
        return False
    folder, suffix = PLAIN_FOLDERS[language]
    return re.fullmatch(rf"{folder}/[a-z][a-z_-]*{re.escape(suffix)}", name) is not None


def _plain_reader(language: str, *, compiled: bool) -> Callable[[str], Escaped]:
    """``{{ plain('powershell/engine-check.ps1') }}``: a partial pasted as it is.

    The partials (templates/powershell/*.ps1, templates/python/*.py) are plain
    code, the same in every bundle: Jinja neither parses nor compiles them, so
    nothing in them is ever read as template syntax, and they cost no compile
    time. Their one final newline is dropped, as trim_blocks drops the one after
    a block tag: the line that pastes a partial ends with the partial's last line.
    """

    folder, suffix = PLAIN_FOLDERS.get(language, (None, None))

    def plain(name: str) -> Escaped:
        if not is_plain_name(name, language):
            raise UnescapedValue(f"plain({name!r}): a {language} file pastes only {folder}/<name>{suffix} partials")
        text = None
        if compiled:
            from .compiled import compiled_partial

            text = compiled_partial(name)
        if text is None:
            text = (templates_dir() / name).read_text(encoding="utf-8")
        return Escaped(text[:-1] if text.endswith("\n") else text, language)

    return plain
