"""Shared fixtures. Outside CI a test whose tool is missing skips with the
reason; in CI (CI=true) the same test fails, so nothing is silently skipped."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from generator.render import render
from generator.spec import build_spec

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
XSD_DIR = SHARED / "reference" / "task-scheduler"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(ok: object, reason: str) -> None:
    """Skip outside CI, fail in CI, when a tool or reference file is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


CANONICAL = {"ip": "127.0.0.13", "name": "py"}


def render_bundle(**inputs) -> dict[str, bytes]:
    """The bundle for the canonical inputs, with any of them changed."""
    return render(build_spec(**{**CANONICAL, **inputs}))


def python_constants(source: bytes) -> dict[str, object]:
    """Top-level ``NAME = <literal>`` assignments of a Python file, read by Python's parser."""
    import ast

    tree = ast.parse(source.decode("utf-8"))
    compile(tree, "<bundle>", "exec")
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.targets[0], ast.Name)
    }


@pytest.fixture(scope="session")
def canonical_files() -> dict[str, bytes]:
    return render(build_spec(**CANONICAL))


@pytest.fixture(scope="session")
def xsd_schemas():
    """Both published Task Scheduler schemas, compiled once."""
    from lxml import etree

    paths = sorted(XSD_DIR.glob("*.xsd"))
    need(len(paths) == 2, f"the two Task Scheduler XSDs in {XSD_DIR}")
    return {p.name: etree.XMLSchema(etree.parse(str(p))) for p in paths}


@pytest.fixture(scope="session")
def wine(tmp_path_factory):
    """A wine prefix and a Windows stub python.exe, shared by the session."""
    from support.wine import Wine

    need(shutil.which("wine"), "wine (Debian: apt-get install wine wine64)")
    need(shutil.which("x86_64-w64-mingw32-gcc"), "mingw (Debian: apt-get install gcc-mingw-w64-x86-64-win32)")
    box = Wine(tmp_path_factory.mktemp("wine"))
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="session")
def env_cache() -> Path:
    """One wheel cache for the session's environment builds (kept between sessions outside CI):
    the first build resolves and downloads for real, the others read it."""
    path = Path(os.environ.get("GEN_BUNDLE_TEST_CACHE") or Path.home() / ".cache" / "gen-bundle-tests")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def uv_bin() -> str:
    from generator.environment.build import find_uv
    from generator.errors import EnvBuildError

    try:
        return find_uv()
    except EnvBuildError as exc:
        need(False, str(exc))


@pytest.fixture(scope="session")
def windows_env(env_cache, uv_bin):
    """The default environment (notebook) for Windows x64, CPython 3.13, resolved against the real index."""
    from generator.environment import Target, build_environment

    return build_environment(
        requirements=("notebook",),
        target=Target("windows", "3.13"),
        cache=env_cache,
        name="py",
        generator_version="0.0.0",
    )


@pytest.fixture(scope="session")
def grammars() -> dict:
    """Both tree-sitter grammars of PowerShell (support/pwsh.py), by name."""
    from support import pwsh

    try:
        return pwsh.parsers()
    except ImportError as exc:  # pragma: no cover - the test extras install both
        need(False, f"the tree-sitter PowerShell grammars ({exc})")


@pytest.fixture(scope="session")
def grammar(grammars):
    """The grammar the parse-tree checks walk: tree-sitter-pwsh."""
    return grammars["tree-sitter-pwsh"]


@pytest.fixture
def fake_uv(fp, monkeypatch, tmp_path):
    """uv faked with pytest-subprocess (register its answers on the returned ``fp``); the
    environment's cache in ``tmp_path``."""
    from support.index import FAKE_UV

    monkeypatch.setattr("generator.environment.build.find_uv", lambda: FAKE_UV)
    monkeypatch.setenv("GEN_BUNDLE_CACHE_DIR", str(tmp_path / "cache"))
    return fp


@pytest.fixture
def index():
    """support.index.Index served on loopback: set ``Index.files``, read ``server_port``."""
    import http.server
    import threading

    from support.index import Index

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
