"""The project's own pages, README.md and docs/*.md: every relative link points to a file that
exists, and every #anchor to a heading of the page it names, as GitHub makes their anchors."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt

from conftest import REPO


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: the heading's text in lowercase, without
    punctuation but hyphens and underscores, spaces as hyphens; a repeated one gets -1, -2..."""
    tokens = MarkdownIt().parse(markdown)
    found: set[str] = set()
    for opening, inline in zip(tokens, tokens[1:], strict=False):
        if opening.type != "heading_open":
            continue
        text = "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        anchor, number = slug, 0
        while anchor in found:
            number += 1
            anchor = f"{slug}-{number}"
        found.add(anchor)
    return found


def links(markdown: str) -> list[str]:
    """Every link's and image's target, in the order they appear."""
    targets = []

    def walk(tokens):
        for token in tokens:
            if token.type == "link_open":
                targets.append(token.attrGet("href"))
            elif token.type == "image":
                targets.append(token.attrGet("src"))
            if token.children:
                walk(token.children)

    walk(MarkdownIt().parse(markdown))
    return targets


def broken_links(root: Path) -> list[str]:
    problems = []
    for page in pages(root):
        for target in links(page.read_text(encoding="utf-8")):
            parts = urlsplit(target)
            if parts.scheme or parts.netloc:
                continue  # a web address: not checked here
            path = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            where = f"{page.relative_to(root)}: {target}"
            if not path.exists():
                problems.append(f"{where}: no such file")
            elif parts.fragment and (path.suffix != ".md" or parts.fragment not in anchors(path.read_text("utf-8"))):
                problems.append(f"{where}: no such heading")
    return problems


def test_every_relative_link_of_the_readme_and_docs_points_to_a_file_and_heading():
    assert (REPO / "docs").is_dir()
    assert broken_links(REPO) == []


def test_the_link_check_can_fail(tmp_path):
    """The control: a missing file, a missing heading and a heading of another page are found;
    good links to both pages, web addresses and a page's own heading are not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n\n## Trust and re-review\n\n[a](docs/a.md) [b](docs/a.md#the-environment---env) "
        "[c](#trust-and-re-review) [d](https://example.org/x.md) [e](docs/gone.md) [f](docs/a.md#top) "
        "[g](#nowhere)\n",
        encoding="utf-8",
    )
    (tmp_path / "docs" / "a.md").write_text(
        "# A\n\n## The environment (`--env`)\n\n[back](../README.md#top) ![img](missing.png)\n", encoding="utf-8"
    )
    assert broken_links(tmp_path) == [
        "README.md: docs/gone.md: no such file",
        "README.md: docs/a.md#top: no such heading",
        "README.md: #nowhere: no such heading",
        "docs/a.md: missing.png: no such file",
    ]


def test_anchors_follow_github():
    assert anchors("# What install.ps1 does\n\n## `bundle.json`\n\n## Tests\n\n## Tests\n") == {
        "what-installps1-does",
        "bundlejson",
        "tests",
        "tests-1",
    }
