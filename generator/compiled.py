"""Run time: the templates the wheel carries compiled, all in one module (generator/precompile.py
writes it at build time as generator/compiled_templates.py).

Compiling the templates is most of a run's time. The wheel carries them compiled, every
template a run renders in one Python module that pip byte-compiles at install (with the
engine built, and the partials those templates paste):
the first run after installation loads one file of bytecode, and the render stays pure (no
cache is written at run time). They are used only when they were compiled by the jinja2
version that runs them; otherwise (a checkout, another jinja2) the templates are compiled
from source.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, MutableMapping
from typing import Any

import jinja2

HERE = os.path.dirname(os.path.realpath(__file__))
MODULE = "compiled_templates"

Factory = Callable[[jinja2.Environment], dict[str, Any]]


class CompiledLoader(jinja2.BaseLoader):
    """Templates from the compiled module: each a function that, given its environment, returns
    the namespace a compiled template module would hold."""

    def __init__(self, factories: dict[str, Factory]) -> None:
        self.factories = factories

    def load(
        self, environment: jinja2.Environment, name: str, globals: MutableMapping[str, Any] | None = None
    ) -> jinja2.Template:
        factory = self.factories.get(name)
        if factory is None:
            raise jinja2.TemplateNotFound(name)
        return environment.template_class.from_module_dict(environment, factory(environment), globals or {})


@functools.cache
def _module() -> Any:
    """The wheel's compiled module, when it carries one for the running jinja2 (else None)."""
    if not os.path.isdir(os.path.join(HERE, "templates")) or not os.path.isfile(os.path.join(HERE, f"{MODULE}.py")):
        return None
    try:  # its first line imports jinja2.runtime's names of the jinja2 that compiled it
        module = importlib.import_module(f"{__package__}.{MODULE}")
    except ImportError:
        return None
    return module if getattr(module, "JINJA_VERSION", None) == jinja2.__version__ else None


def compiled_partial(name: str) -> str | None:
    """A plain partial's text as the wheel carries it (read at build time), or None."""
    module = _module()
    text: str | None = module.PARTIALS.get(name) if module is not None else None
    return text


def compiled_shared(template: str, version: str) -> bytes | None:
    """A file every bundle of ``version`` shares, as the wheel carries it rendered, or None."""
    module = _module()
    data: bytes | None = module.SHARED.get((template, version)) if module is not None else None
    return data


def compiled_loader(language: str) -> CompiledLoader | None:
    """The compiled templates of ``language``, when the wheel carries them for the running jinja2.

    Only an installed wheel has them, beside the templates it carries (generator/templates):
    in a checkout, where templates/ is edited, the templates are always compiled from source.
    """
    module = _module()
    if module is None:
        return None
    factories: dict[str, Factory] = module.TEMPLATES.get(language, {})
    return CompiledLoader(factories) if factories else None
