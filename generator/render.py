"""The pure render: a BundleSpec in, every file of the bundle as bytes out.

No file system writes (not even a template cache), clocks or randomness
here: the same spec always gives the same bytes, which is what makes a
reviewed bundle reproducible.
"""

from __future__ import annotations

import hashlib
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING

from . import bundle_format, constants, engine_source, figures
from .bundle_format import (
    BUNDLE_JSON,
    ENV_FILES,
    HOSTS_FILE,
    MANIFEST_SCHEMA,
    README,
    SHA256SUMS,
    engine_file,
    manifest_bytes,
    sums_bytes,
)
from .layout import Layout
from .spec import BundleSpec
from .templating import jinja_environment, templates_dir

if TYPE_CHECKING:
    import jinja2

    from .environment import BuiltEnv


@dataclass(frozen=True)
class Output:
    """How one rendered text becomes bytes for the program that will read it."""

    template: str
    language: str  # a key of templating.FILTERS: the filters its {{ }} may use
    encoding: str  # a Python codec; 'utf-8-sig' and 'utf-16' write a BOM
    _: KW_ONLY
    crlf: bool
    shared: bool = False  # rendered from the version alone (no input): the same bytes in every bundle


ENGINE_OUTPUT = Output(f"{engine_source.FOLDER}/{engine_source.LOADER}", "ps", "utf-8-sig", crlf=True, shared=True)


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
    layout = Layout(spec)
    return {
        engine_file(spec.version): ENGINE_OUTPUT,
        layout.launcher_file: Output("start.bat.j2", "bat", "utf-8", crlf=True),
        layout.launcher_script_file: Output("launcher.py.j2", "py", "utf-8", crlf=True),
        layout.config_file: Output("server_config.py.j2", "py", "utf-8", crlf=True),
        layout.guard_file: Output("guard.py.j2", "py", "utf-8", crlf=True),
        layout.task_file: Output("task.xml.j2", "xml", "utf-16", crlf=True),
        layout.broker_file: Output("broker.py.j2", "py", "utf-8", crlf=True),
        layout.broker_task_file: Output("broker.task.xml.j2", "xml", "utf-16", crlf=True),
        HOSTS_FILE: Output("hosts.txt.j2", "hosts", "ascii", crlf=True),
        "install.ps1": Output("install.ps1.j2", "ps", "utf-8-sig", crlf=True),
        "uninstall.ps1": Output("uninstall.ps1.j2", "ps", "utf-8-sig", crlf=True),
        "detect.ps1": Output("detect.ps1.j2", "ps", "utf-8-sig", crlf=True),
        README: Output("README.md.j2", "md", "utf-8", crlf=False),
    }


def bundle_files(spec: BundleSpec) -> list[str]:
    """Every file name of the bundle, sorted: the list bundle.json records."""
    return sorted([*outputs(spec), *(ENV_FILES if spec.env else ()), BUNDLE_JSON, SHA256SUMS])


def _encode(text: str, output: Output) -> bytes:
    if "\r" in text:
        raise ValueError(f"{output.template}: a stray carriage return would break the line endings")
    if output.crlf:
        text = text.replace("\n", "\r\n")
    # The BOMs written out: Python's 'utf-16' codec writes the machine's byte order, and
    # 'utf-8-sig' is a codec module to look up where 'utf-8' is built in.
    if output.encoding == "utf-16":
        return b"\xff\xfe" + text.encode("utf-16-le")
    if output.encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    return text.encode(output.encoding)


def render(spec: BundleSpec, env: BuiltEnv | None = None) -> dict[str, bytes]:
    """Every file of the bundle, by name, in sorted order.

    ``env`` is the built environment of a spec with ``env``: its archive, lock and
    SBOM are files of the bundle, and the templates name its folder and packages.
    """
    if spec.env != (env is not None):
        raise ValueError("render: a spec with env needs its built environment, and only such a spec")
    jinjas: dict[str, jinja2.Environment] = {}
    files: dict[str, bytes] = dict(env.files_of_bundle) if env else {}
    sha: dict[str, str] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    names = bundle_files(spec)
    context = {
        "engine_file": engine_file(spec.version),
        "sha_of": lambda names: {name: sha[name] for name in names},
        "env": env,
        "python_exe": Layout(spec).server_python(env.folder if env else None),
        "spec": spec,
        "bundle_files": names,
        "verified_files": [name for name in names if name != SHA256SUMS],  # what SHA256SUMS lists
        "const": constants,
        "layout": Layout(spec),
        "bundle_format": bundle_format,  # the bundle's own file names
        "sha": sha,
        **figures.of(files, engine=engine_file(spec.version)),  # the README's measurements of the others
    }
    for name, output in outputs(spec).items():
        if output.shared:
            files[name] = render_shared(output, spec.version)
        else:
            if output.language not in jinjas:
                jinjas[output.language] = jinja_environment(output.language)
            files[name] = _encode(jinjas[output.language].get_template(output.template).render(context), output)
        sha[name] = hashlib.sha256(files[name]).hexdigest()
    manifest = {
        "generator": "gen-bundle",
        "schema": MANIFEST_SCHEMA,
        "version": spec.version,
        "inputs": spec.inputs(),
        "engine": {"file": engine_file(spec.version), "sha256": sha[engine_file(spec.version)]},
        "files": names,
    }
    files[BUNDLE_JSON] = manifest_bytes(manifest)
    sha[BUNDLE_JSON] = hashlib.sha256(files[BUNDLE_JSON]).hexdigest()
    files[SHA256SUMS] = sums_bytes(sha)
    return dict(sorted(files.items()))


def render_shared(output: Output, version: str, *, compiled: bool = True) -> bytes:
    """A file every bundle of ``version`` shares (the engine): built from the version and the
    constants, and nothing of any input, so its bytes cannot depend on one. The wheel carries
    it built for its own version (generator/compiled.py); any other version is built from
    templates/engine/, which the wheel carries too."""
    if compiled:
        from .compiled import compiled_shared

        ready = compiled_shared(output.template, version)
        if ready is not None:
            return ready
    if output != ENGINE_OUTPUT:
        raise ValueError(f"{output.template}: only the engine is shared by every bundle")
    source = templates_dir() / engine_source.FOLDER
    return _encode(engine_source.build(version, lambda name: (source / name).read_text(encoding="utf-8")), output)


def engine(version: str) -> tuple[str, bytes]:
    """The engine of ``version``: its file name and bytes, as every bundle of that version holds them."""
    return engine_file(version), render_shared(ENGINE_OUTPUT, version)
