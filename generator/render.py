"""The pure render: a BundleSpec in, every file of the bundle as bytes out.

No file system writes, clocks or randomness here: the same spec always gives
the same bytes, which is what makes a reviewed bundle reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import escape
from . import spec as constants
from .spec import BundleSpec

BUNDLE_JSON = "bundle.json"
SHA256SUMS = "SHA256SUMS"


@dataclass(frozen=True)
class Output:
    """How one rendered text becomes bytes for the program that will read it."""

    template: str
    encoding: str  # a Python codec; 'utf-8-sig' and 'utf-16' write a BOM
    crlf: bool


def outputs(spec: BundleSpec) -> dict[str, Output]:
    """File name -> template and byte form, for every rendered file, in render order.

    The files install.ps1 copies come first: later templates may name their
    SHA-256 (``sha`` in the template context), as detect.ps1 does.

    cmd.exe reads the launcher in the console code page: it switches to
    UTF-8 (chcp 65001) before any non-ASCII line, so the file is UTF-8
    without a BOM (a BOM would break its first line). Windows PowerShell 5.1
    reads a BOM-less script as ANSI, hence UTF-8 with BOM. Task Scheduler
    imports UTF-16LE with BOM, as Windows itself exports tasks.
    """
    return {
        spec.launcher_file: Output("start.bat.j2", "utf-8", crlf=True),
        spec.config_file: Output("server_config.py.j2", "utf-8", crlf=True),
        spec.guard_file: Output("guard.py.j2", "utf-8", crlf=True),
        spec.task_file: Output("task.xml.j2", "utf-16", crlf=True),
        "hosts.txt": Output("hosts.txt.j2", "ascii", crlf=True),
        "install.ps1": Output("install.ps1.j2", "utf-8-sig", crlf=True),
        "uninstall.ps1": Output("uninstall.ps1.j2", "utf-8-sig", crlf=True),
        "detect.ps1": Output("detect.ps1.j2", "utf-8-sig", crlf=True),
        "README.md": Output("README.md.j2", "utf-8", crlf=False),
    }


def bundle_files(spec: BundleSpec) -> list[str]:
    """Every file name of the bundle, sorted: the list bundle.json records."""
    return sorted([*outputs(spec), BUNDLE_JSON, SHA256SUMS])


def templates_dir() -> Path:
    """templates/ inside an installed wheel, else at the top of the checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "start.bat.j2").is_file():
            return candidate
    raise FileNotFoundError(f"gen-bundle's templates are missing (looked beside {here})")


def _bytecode_cache():
    """Compiled templates, kept between runs: compiling them costs more than
    everything else gen-bundle does. Jinja keys each entry by the template's
    checksum and its own version, so an edited template is compiled anew.
    Without a writable cache directory the templates are compiled every run.
    """
    import jinja2

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "gen-bundle", "jinja")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        return None
    if not os.access(directory, os.W_OK):
        return None
    return jinja2.FileSystemBytecodeCache(directory)


def _environment():
    import jinja2  # imported here, not at module load: --help and --version stay fast

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=lambda name: bool(name) and name.endswith(".xml.j2"),
    )
    env.filters.update(bat=escape.bat, ps=escape.ps, md=escape.md, py=escape.py)
    return env


def _encode(text: str, output: Output) -> bytes:
    if "\r" in text:
        raise ValueError(f"{output.template}: a stray carriage return would break the line endings")
    if output.crlf:
        text = text.replace("\n", "\r\n")
    # Python's 'utf-16' codec writes the BOM in the machine's byte order; be explicit.
    if output.encoding == "utf-16":
        return b"\xff\xfe" + text.encode("utf-16-le")
    return text.encode(output.encoding)


def render(spec: BundleSpec) -> dict[str, bytes]:
    """Every file of the bundle, by name, in sorted order."""
    env = _environment()
    files: dict[str, bytes] = {}
    sha: dict[str, str] = {}
    context = {"spec": spec, "bundle_files": bundle_files(spec), "const": constants, "sha": sha}
    for name, output in outputs(spec).items():
        text = env.get_template(output.template).render(context)
        files[name] = _encode(text, output)
        sha[name] = hashlib.sha256(files[name]).hexdigest()
    manifest = {
        "generator": "gen-bundle",
        "version": spec.version,
        "inputs": spec.inputs(),
        "files": bundle_files(spec),
    }
    files[BUNDLE_JSON] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    sha[BUNDLE_JSON] = hashlib.sha256(files[BUNDLE_JSON]).hexdigest()
    files[SHA256SUMS] = "".join(f"{sha[name]}  {name}\n" for name in sorted(sha)).encode("ascii")
    return dict(sorted(files.items()))
