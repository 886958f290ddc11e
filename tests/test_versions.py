"""gen-bundle's version changes with every change to what it renders.

check tells "made by another version" from "modified" by the version in bundle.json: that works
only if one version always renders the same bytes. tests/golden/versions.txt records, for each
version, a fingerprint of what it renders (the SHA256SUMS of a few input sets, which name every
file's SHA-256, the engine's among them). The record of a version may be written once: a render
that changes while the version stays fails here, and so does a record rewritten in git's history.

After an intended change to a template: raise ``generator.__version__``, add its section to
CHANGELOG.md, and run ``GEN_BUNDLE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
tests/test_versions.py`` (outside CI) to add the new version's line.

A bundle with --env is left out of the fingerprint: its lock is resolved against the package
index of the day. The engine, which holds the environment's code, is in every bundle.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess

import pytest

from generator import __version__
from generator.bundle_format import SHA256SUMS
from generator.render import render
from generator.spec import build_spec

from conftest import IN_CI, REPO, need

VERSIONS = REPO / "tests" / "golden" / "versions.txt"
CHANGELOG = REPO / "CHANGELOG.md"
UPDATE = os.environ.get("GEN_BUNDLE_UPDATE_GOLDEN") == "1"
LINE = re.compile(r"(\d+\.\d+\.\d+)  ([0-9a-f]{64})")
INPUT_SETS = [
    {"ip": "127.0.0.13", "name": "py"},
    {"ip": "127.0.0.42", "name": "lab-1", "port": 8080, "auth": "none", "window": "minimized"},
    {"ip": "127.0.0.13", "name": "py", "scope": "user", "user": "CONTOSO\\alice"},
    {
        "ip": "127.0.0.13",
        "name": "py",
        "python": "D:\\Python 3.13 & Co\\python.exe",
        "notebook_dir": "D:\\Data & Co\\100%",
    },
]


def fingerprint(version: str = __version__) -> str:
    digest = hashlib.sha256()
    for inputs in INPUT_SETS:
        spec = build_spec(**inputs)
        assert spec.version == version
        digest.update(render(spec)[SHA256SUMS])
    return digest.hexdigest()


def records(text: str) -> list[tuple[str, str]]:
    found = []
    for line in text.splitlines():
        match = LINE.fullmatch(line)
        assert match, f"versions.txt: {line!r} is not '<version>  <fingerprint>'"
        found.append((match[1], match[2]))
    return found


def conflicts(histories: list[list[tuple[str, str]]]) -> list[str]:
    """Each version that has had two fingerprints, in any of the files given."""
    seen: dict[str, set[str]] = {}
    for entries in histories:
        for version, digest in entries:
            seen.setdefault(version, set()).add(digest)
    return sorted(version for version, digests in seen.items() if len(digests) > 1)


def test_this_version_renders_what_it_recorded():
    now = fingerprint()
    recorded = dict(records(VERSIONS.read_text(encoding="ascii"))) if VERSIONS.exists() else {}
    if UPDATE and not IN_CI and recorded.get(__version__) != now:
        kept = [f"{version}  {digest}" for version, digest in recorded.items() if version != __version__]
        VERSIONS.write_text("".join(line + "\n" for line in [*kept, f"{__version__}  {now}"]), encoding="ascii")
        pytest.skip(f"GEN_BUNDLE_UPDATE_GOLDEN=1: recorded {__version__}'s fingerprint; nothing was verified")
    assert __version__ in recorded, (
        f"gen-bundle {__version__} has no line in {VERSIONS.name}: add it (GEN_BUNDLE_UPDATE_GOLDEN=1, outside CI)"
    )
    assert recorded[__version__] == now, (
        f"what gen-bundle renders changed while its version stayed {__version__}: raise generator.__version__, "
        f"add its section to CHANGELOG.md, and record the new version (GEN_BUNDLE_UPDATE_GOLDEN=1)"
    )


def test_no_version_was_ever_recorded_with_two_fingerprints():
    """Rewriting a version's line (what an update without a new version does) shows in git's history."""
    need(shutil.which("git"), "git")
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=REPO, capture_output=True, text=True)
    need(inside.returncode == 0, f"{REPO} as a git work tree")
    path = VERSIONS.relative_to(REPO).as_posix()
    commits = subprocess.run(
        ["git", "log", "--format=%H", "--", path], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    # Not vacuous: the file has been committed (0.2.0's record, then each later one's); a shallow
    # clone that holds no commit of it would check nothing.
    assert commits, f"git's history holds no commit of {path}"
    histories = [records(VERSIONS.read_text(encoding="ascii"))]
    for commit in commits:
        shown = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True, text=True)
        if shown.returncode == 0:  # the commit that deleted the file has none
            histories.append(records(shown.stdout))
    assert conflicts(histories) == [], f"a version's fingerprint was rewritten: {conflicts(histories)}"


def test_a_rewritten_record_is_found():
    """The control: the same version with two fingerprints, in two states of the file."""
    assert conflicts([[("0.2.0", "a" * 64)], [("0.2.0", "b" * 64), ("0.3.0", "c" * 64)]]) == ["0.2.0"]
    assert conflicts([[("0.2.0", "a" * 64)], [("0.2.0", "a" * 64), ("0.3.0", "c" * 64)]]) == []


def test_the_fingerprint_sees_a_change_in_any_input_set(monkeypatch):
    """A change that only one input set shows (here, a user-scope bundle's) changes the fingerprint."""
    before = fingerprint()
    real = render

    def changed(spec, env=None):
        files = real(spec, env)
        if spec.scope == "user":
            files[SHA256SUMS] += b"changed\n"
        return files

    monkeypatch.setattr(f"{__name__}.render", changed)
    assert fingerprint() != before


def test_every_version_has_its_changelog_section():
    headings = re.findall(r"^## (\d+\.\d+\.\d+)\b", CHANGELOG.read_text(encoding="utf-8"), flags=re.M)
    assert headings and headings[0] == __version__, f"CHANGELOG.md's first section is {headings[:1]}, not {__version__}"
    recorded = [version for version, _ in records(VERSIONS.read_text(encoding="ascii"))]
    assert set(recorded) <= set(headings), sorted(set(recorded) - set(headings))
