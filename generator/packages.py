"""Python packages as gen-bundle takes them: a requirement of --package or of a --requirements
file, the name a lock pins, and the files they are read from.

Apart from the spec: the environment's build (generator/environment/) compares the names its lock
pins with these, and imports this module alone, not the inputs' checks.
"""

from __future__ import annotations

import os
import re

from .errors import InvalidValue

# The package every environment has: the launcher runs its "python -m notebook".
NOTEBOOK_PACKAGE = "notebook"
# A requirements file or a lock is text of a few hundred KiB at most.
MAX_INPUT_FILE_BYTES = 16 * 1024 * 1024

_REQUIREMENT = (  # compiled on first use (re caches it)
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
    r"(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?"
    r"(?:(?:===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+(?:,(?:===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+)*)?"
)


def normalize_package(name: str) -> str:
    """PEP 503's name: 'Jupyter_Core' and 'jupyter-core' are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_package(value: object, *, param: str = "packages") -> str:
    """NAME, NAME[extra] or NAME with version comparisons, spaces removed; nothing that
    could make the resolver fetch or run something else (URLs, paths, options, markers)."""
    text = "".join(value.split()) if isinstance(value, str) else value
    if not isinstance(text, str) or not text.isascii() or not re.fullmatch(_REQUIREMENT, text):
        raise InvalidValue(
            param,
            value,
            "must be a package NAME, NAME==VERSION or NAME with version comparisons such as NAME>=1.2,<2 "
            "(no URLs, paths, options or markers)",
        )
    return text


def requirement_name(requirement: str) -> str:
    """The normalised package name of a requirement parse_package accepted."""
    found = re.fullmatch(_REQUIREMENT, requirement)
    if found is None:
        raise ValueError(f"{requirement!r} is not a requirement parse_package accepted")
    return normalize_package(found.group("name"))


def read_input_file(param: str, path: str | os.PathLike[str]) -> str:
    """A file an option names (a requirements file, a lock): bounded in size, UTF-8, and any
    problem reported as that option's, since the user typed its path."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INPUT_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidValue(param, str(path), f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_FILE_BYTES:
        raise InvalidValue(param, str(path), f"is larger than {MAX_INPUT_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidValue(param, str(path), "is not UTF-8 text") from None


def read_requirements(path: str | os.PathLike[str]) -> list[str]:
    """The packages of a requirements file: one per line, '#' comments and blank lines ignored.

    Only package requirements: a line with an option (-r, --index-url, -e), a URL, a
    path or a marker is refused, naming the file and line, rather than passed on.
    """
    packages = []
    for number, line in enumerate(read_input_file("requirements", path).splitlines(), start=1):
        text = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not text:
            continue
        try:
            packages.append(parse_package(text, param="requirements"))
        except InvalidValue as exc:
            raise InvalidValue("requirements", f"{path}:{number}: {text}", exc.rule) from None
    return packages
