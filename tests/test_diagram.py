"""The README's diagram of what runs as whom: Mermaid, drawn here by Mermaid itself (npm's
mermaid, its mermaid.min.js) in headless Chromium, as the sites that show Markdown draw it.

A diagram that Mermaid cannot parse shows there as an error box instead: each variant's
diagram must render, name what the bundle runs, and a planted broken label must not render."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from generator.constants import TASK_FOLDER
from generator.escape import md_mermaid
from generator.layout import Layout
from generator.render import render
from generator.spec import build_spec

from conftest import CANONICAL, need
from support.broker import chromium
from support.cdp import Chromium

MERMAID_VERSION = "11.17.2"
VARIANTS = [
    {},
    {"window": "minimized"},
    {"scope": "user", "user": "CONTOSO\\o'brien & #1 ops"},
    {"name": "lab-1", "ip": "127.0.0.42", "port": 8080},
]


@pytest.fixture(scope="module")
def mermaid_js() -> Path:
    """mermaid.min.js of MERMAID_VERSION from the npm registry, kept in the tests' cache."""
    cache = Path(os.environ.get("GEN_BUNDLE_TEST_CACHE") or Path.home() / ".cache" / "gen-bundle-tests")
    script = cache / f"mermaid-{MERMAID_VERSION}" / "package" / "dist" / "mermaid.min.js"
    if not script.exists():
        need(shutil.which("npm"), "npm (Node.js), to fetch mermaid from the npm registry")
        folder = script.parents[2]
        folder.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(
            ["npm", "pack", "--silent", f"mermaid@{MERMAID_VERSION}"], cwd=folder, capture_output=True, text=True
        )
        need(packed.returncode == 0, f"npm pack mermaid@{MERMAID_VERSION}: {packed.stderr.strip()[-300:]}")
        with tarfile.open(folder / packed.stdout.strip().splitlines()[-1]) as archive:
            archive.extractall(folder, filter="data")
    return script


@pytest.fixture(scope="module")
def page(mermaid_js, tmp_path_factory):
    binary = chromium()
    need(binary, "Chromium (Debian: apt-get install chromium)")
    folder = tmp_path_factory.mktemp("diagram")
    html = folder / "page.html"
    html.write_text(
        f'<!doctype html><meta charset="utf-8"><script src="{mermaid_js.as_uri()}"></script>'
        "<script>mermaid.initialize({startOnLoad: false});</script>",
        encoding="utf-8",
    )
    browser = Chromium(binary, str(folder / "profile"), "")
    try:
        session = browser.open(html.as_uri())
        browser.wait_for(session, "typeof mermaid !== 'undefined'")
        yield browser, session
    finally:
        browser.close()


def diagrams(markdown: str) -> list[str]:
    blocks, inside = [], None
    for line in markdown.splitlines():
        if inside is None and line == "```mermaid":
            inside = []
        elif inside is not None and line == "```":
            blocks.append("\n".join(inside))
            inside = None
        elif inside is not None:
            inside.append(line)
    return blocks


def drawn(page, text: str) -> dict:
    """Mermaid's own parse and render of ``text``: the SVG's text, or the error it gave."""
    browser, session = page
    return browser.evaluate(
        session,
        "(async () => { try { const {svg} = await mermaid.render('d' + Date.now(), "
        + json.dumps(text)
        + "); const box = document.createElement('div'); box.innerHTML = svg;"
        " return {text: box.textContent}; } catch (e) { return {error: String(e)}; } })()",
    )


@pytest.mark.parametrize("inputs", VARIANTS, ids=["canonical", "minimized", "user-hostile", "lab"])
def test_the_readme_diagram_renders_and_names_what_runs(page, inputs):
    spec = build_spec(**{**CANONICAL, **inputs})
    layout = Layout(spec)
    (diagram,) = diagrams(render(spec)["README.md"].decode("utf-8"))
    result = drawn(page, diagram)
    assert "error" not in result, result
    text = " ".join(result["text"].split())
    for name in (
        TASK_FOLDER + layout.broker_task_name,
        TASK_FOLDER + layout.task_name,
        layout.broker_file,
        layout.launcher_file,
        layout.launcher_script_file,
        f"{spec.ip}:{spec.port}",
        layout.url,
        "LOCAL SERVICE",
        "install.ps1, as SYSTEM",
    ):
        assert name in text, (name, text)
    assert ("conhost.exe --headless" in text) == (spec.window == "hidden")
    if spec.scope == "user":
        assert f"logon of {spec.user}" in text  # shown as itself: the quote, '&' and '#' included


def test_a_label_that_is_not_escaped_does_not_render(page):
    """The control: the same label with a raw quote breaks Mermaid's parse, and with the filter
    it renders as itself."""
    user = 'CONTOSO\\a "b" #1'
    assert "error" in drawn(page, f'flowchart TD\n    a["logon of {user}"] --> b["x"]')
    result = drawn(page, f'flowchart TD\n    a["logon of {md_mermaid(user)}"] --> b["x"]')
    assert "error" not in result and f"logon of {user}" in result["text"], result


def test_md_mermaid_gives_each_markup_character_as_its_code():
    assert md_mermaid('a "b" #1 & <c> `d`') == "a #34;b#34; #35;1 #38; #60;c#62; #96;d#96;"
    with pytest.raises(ValueError):
        md_mermaid("line\nbreak")


def test_how_it_works_draws_the_canonical_bundles_diagram():
    """docs/how-it-works.md's diagram is the default bundle's, line for line: drawn above, kept true."""
    from conftest import REPO

    project = diagrams((REPO / "docs" / "how-it-works.md").read_text(encoding="utf-8"))
    assert project == diagrams(render(build_spec(**CANONICAL))["README.md"].decode("utf-8"))
