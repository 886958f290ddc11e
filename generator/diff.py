"""gen-bundle diff OLD NEW: what a re-reviewer reads before approving a new bundle.

First what changed in plain words (inputs, generator version, the engine, files, the
hosts block, the task's settings, the environment's packages), then a unified diff of each
changed text file: the task XML decoded from UTF-16, line endings shown only where they
changed. The engine, the same in every bundle of a version, is one unit: "engine unchanged"
between two bundles of one version, else its own section, last, whatever its file name.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
import xml.etree.ElementTree as ElementTree

from .bundle import Bundle, read_bundle
from .bundle_format import ENV_LOCK, HOSTS_FILE
from .signature import strip_signature

TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
TEXT_SUFFIXES = (".ps1", ".psm1", ".bat", ".py", ".md", ".txt", ".json", ".toml", ".xml")
WELL_KNOWN = {"S-1-5-32-545": "BUILTIN\\Users", "S-1-5-32-544": "BUILTIN\\Administrators", "S-1-5-18": "SYSTEM"}


def _text(name: str, data: bytes) -> str | None:
    if not name.endswith(TEXT_SUFFIXES) and name != "SHA256SUMS":
        return None
    try:
        if data.startswith(b"\xff\xfe"):
            return data[2:].decode("utf-16-le")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def task_settings(data: bytes | None) -> dict[str, str]:
    """The settings of a task XML a reviewer weighs, in words."""
    if data is None:
        return {}
    decoded = _text("task.xml", data)
    if decoded is None:
        return {"XML": "not readable"}
    try:
        root = ElementTree.fromstring(decoded.encode("utf-8").replace(b'encoding="UTF-16"', b'encoding="UTF-8"'))
    except ElementTree.ParseError:
        return {"XML": "not readable"}

    def value(path: str) -> str:
        node = root.find(path, TASK_NS)
        return (node.text or "").strip() if node is not None else ""

    def text(node: ElementTree.Element, path: str) -> str:
        found = node.find(path, TASK_NS)
        return (found.text or "").strip() if found is not None else ""

    principals = []
    for principal in root.findall("t:Principals/t:Principal", TASK_NS):
        group, user = text(principal, "t:GroupId"), text(principal, "t:UserId")
        who = f"group {group} ({WELL_KNOWN.get(group, group)})" if group else f"user {WELL_KNOWN.get(user, user)}"
        principals.append(f"{who}, run level {text(principal, 't:RunLevel')} (id {principal.get('id', '')})")
    actions = root.find("t:Actions", TASK_NS)
    commands = [
        f"{text(e, 't:Command')} {text(e, 't:Arguments')}".strip() for e in root.findall("t:Actions/*", TASK_NS)
    ]
    triggers = [f"{t.tag.split('}')[-1]} {text(t, 't:UserId')}".strip() for t in root.findall("t:Triggers/*", TASK_NS)]
    return {
        "runs as": "; ".join(principals) or "(no principal)",
        "actions run as": actions.get("Context", "") if actions is not None else "",
        "starts at": "; ".join(triggers) or "(no trigger)",
        "command": " ; ".join(commands) or "(no action)",
        "working directory": value("t:Actions/t:Exec/t:WorkingDirectory"),
        "more than one instance": value("t:Settings/t:MultipleInstancesPolicy"),
        "time limit": value("t:Settings/t:ExecutionTimeLimit"),
    }


def _task_file(bundle: Bundle) -> bytes | None:
    return next((data for name, data in bundle.files.items() if name.endswith(".task.xml")), None)


def _packages(bundle: Bundle) -> dict[str, str]:
    lock = bundle.files.get(ENV_LOCK)
    if lock is None:
        return {}
    try:
        document = tomllib.loads(lock.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {"(pylock.toml)": "not readable"}
    packages = document.get("packages")
    if not isinstance(packages, list):
        return {"(pylock.toml)": "holds no list of packages"}
    return {str(p.get("name")): str(p.get("version")) for p in packages if isinstance(p, dict)}


def _hosts(bundle: Bundle) -> list[str]:
    text = _text(HOSTS_FILE, bundle.files.get(HOSTS_FILE, b"")) or ""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _form(data: bytes) -> str:
    if data.startswith(b"\xff\xfe"):
        return "UTF-16LE with BOM"
    if data.startswith(b"\xef\xbb\xbf"):
        return "UTF-8 with BOM"
    return "no BOM"


def _show(line: str) -> tuple[str, str]:
    body = line.rstrip("\r\n")
    return body, line[len(body) :]


def unified(name: str, old: str, new: str, new_name: str | None = None) -> list[str]:
    """A unified diff; a line whose only change is its line ending says so ([CRLF] / [LF])."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out = []
    for line in difflib.unified_diff(a, b, f"a/{name}", f"b/{new_name or name}", n=2):
        if line.startswith(("---", "+++", "@@")):
            out.append(line.rstrip("\n"))
            continue
        out.append(line)
    # Mark the ending of a changed line whose text is on the other side with another ending.
    sides: dict[str, set[tuple[str, str]]] = {"-": set(), "+": set()}
    for line in out:
        if line[:1] in sides and not line.startswith(("---", "+++")):
            sides[line[0]].add(_show(line[1:]))
    shown = []
    for line in out:
        if line[:1] in sides and not line.startswith(("---", "+++")):
            body, ending = _show(line[1:])
            other = sides["+" if line[0] == "-" else "-"]
            if (body, ending) not in other and any(body == text for text, _ in other):
                body += {"\r\n": " [CRLF]", "\n": " [LF]", "": " [no newline at end]"}.get(ending, f" [{ending!r}]")
            shown.append(line[0] + body)
        else:
            shown.append(_show(line)[0])
    return shown


def _engine(bundle: Bundle) -> tuple[str, bytes] | None:
    """The engine bundle.json names, as rendered (its signature block set aside), when it is there."""
    named = bundle.engine
    if named is None or named[0] not in bundle.files:
        return None
    return named[0], strip_signature(bundle.files[named[0]])


def _engine_lines(old: Bundle, new: Bundle) -> tuple[list[str], list[str]]:
    """The engine's summary line and its section (a unified diff), for the two bundles."""
    before, after = _engine(old), _engine(new)

    def named(engine: tuple[str, bytes] | None) -> str:
        if engine is None:
            return "(none: the scripts held all their code)"
        return f"{engine[0]} (SHA-256 {hashlib.sha256(engine[1]).hexdigest()})"

    if before is None and after is None:
        return [], []
    if before == after:
        return [f"engine unchanged: {named(after)}"], []
    summary = [f"engine changed: {named(before)} -> {named(after)}; its diff is the last section"]
    old_name, old_text = (before[0], _text(before[0], before[1]) or "") if before else ("(none)", "")
    new_name, new_text = (after[0], _text(after[0], after[1]) or "") if after else ("(none)", "")
    section = [f"==== engine: {old_name} -> {new_name} ====", *unified(old_name, old_text, new_text, new_name)]
    return summary, section


# The files that say what the others are: their diffs come after the code's.
RECORDS = ("README.md", "bundle.json", "SHA256SUMS")


def _renamed(old: Bundle, new: Bundle, removed: set[str], added: set[str]) -> dict[str, str]:
    """Files whose name holds --name (start-py.bat -> start-lab.bat): paired, so that the reviewer
    reads what changed in them rather than two whole files."""
    before, after = old.inputs.get("name"), new.inputs.get("name")
    if not isinstance(before, str) or not isinstance(after, str) or before == after:
        return {}
    pairs = {}
    for name in sorted(removed):
        stem, dot, suffix = name.rpartition(".")
        candidate = stem.replace(before, after) + dot + suffix
        if candidate != name and candidate in added:
            pairs[name] = candidate
    return pairs


# The inputs whose values a bundle's files quote (and the URL made of two of them): a line that
# differs from the old one only by these is a line the inputs' lines above already said.
QUOTED_INPUTS = ("ip", "name", "port", "notebook_dir", "python", "user", "python_version")


def _url(inputs: dict[str, object]) -> str | None:
    name, port = inputs.get("name"), inputs.get("port")
    if not isinstance(name, str) or not isinstance(port, int):
        return None
    from .layout import url_of

    return url_of(name, port)


def value_changes(old: Bundle, new: Bundle) -> list[tuple[str, str]]:
    """(old value, new value) of each quoted input that changed, the URL first."""
    pairs: list[tuple[object, object]] = [(_url(old.inputs), _url(new.inputs))]
    pairs += [(old.inputs.get(key), new.inputs.get(key)) for key in QUOTED_INPUTS]
    return [
        (str(a), str(b))
        for a, b in pairs
        if isinstance(a, (str, int))
        and isinstance(b, (str, int))
        and str(a)
        and a != b
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ]


def put_in(text: str, changes: list[tuple[str, str]]) -> str:
    """``text`` with each old value, standing alone (no letter or digit either side), replaced by
    its new one, all in one pass. A line this makes equal to the new file's line changed only by
    the inputs; a line it mangles (a value inside another word) still shows as a change, so
    nothing is hidden that the inputs did not say. (Not after a dot: a file extension.)"""
    if not changes:
        return text
    table = dict(changes)
    pattern = "|".join(re.escape(value) for value in sorted(table, key=len, reverse=True))
    return re.sub(rf"(?<![A-Za-z0-9.])(?:{pattern})(?![A-Za-z0-9])", lambda m: table[m.group(0)], text)


def diff_bundles(old_folder: str, new_folder: str, *, verbatim: bool = False) -> list[str]:
    """The lines of the report; none when the two bundles are identical, file for file.

    Unless ``verbatim``, a file's diff is taken after the new inputs' values are put into the
    old file: what the input lines already said is not said again in every line that quotes
    it, and the reviewer of a second bundle reads what differs beyond the values."""
    old, new = read_bundle(old_folder), read_bundle(new_folder)
    if old.files == new.files and old.others == new.others:
        return []
    lines = []
    if old.version != new.version:
        lines.append(f"generator: gen-bundle {old.version} -> {new.version}")
    for key in sorted(set(old.inputs) | set(new.inputs), key=lambda k: (k not in old.inputs, k)):
        before, after = old.inputs.get(key, "(not set)"), new.inputs.get(key, "(not set)")
        if before != after:
            lines.append(f"input {key}: {before} -> {after}")
    if (old.signature or {}).get("thumbprint") != (new.signature or {}).get("thumbprint"):
        lines.append(
            f"signed by: {(old.signature or {}).get('thumbprint', 'nobody')} -> "
            f"{(new.signature or {}).get('thumbprint', 'nobody')}"
        )
    engine_summary, engine_section = _engine_lines(old, new)
    lines += engine_summary
    engines = {engine[0] for engine in (_engine(old), _engine(new)) if engine}
    renamed = _renamed(old, new, set(old.files) - set(new.files) - engines, set(new.files) - set(old.files) - engines)
    added = sorted(set(new.files) - set(old.files) - engines - set(renamed.values()))
    removed = sorted(set(old.files) - set(new.files) - engines - set(renamed))
    lines += [f"file renamed: {before} -> {after} (with --name)" for before, after in sorted(renamed.items())]
    lines += [f"file added: {name}" for name in added] + [f"file removed: {name}" for name in removed]
    lines += [
        f"entry added: {name} (not a regular file: a bundle holds files only)"
        for name in sorted(set(new.others) - set(old.others))
    ]
    lines += [f"entry removed: {name} (not a regular file)" for name in sorted(set(old.others) - set(new.others))]
    if _hosts(old) != _hosts(new):
        before, after = " / ".join(_hosts(old)) or "(none)", " / ".join(_hosts(new)) or "(none)"
        lines.append(f"hosts file block: {before} -> {after}")
    old_task, new_task = task_settings(_task_file(old)), task_settings(_task_file(new))
    for key in [k for k in new_task if k in old_task] + [k for k in new_task if k not in old_task]:
        if old_task.get(key) != new_task.get(key):
            lines.append(f"task {key}: {old_task.get(key, '(none)')} -> {new_task[key]}")
    old_packages, new_packages = _packages(old), _packages(new)
    for package in sorted(set(old_packages) | set(new_packages), key=str.lower):
        before, after = old_packages.get(package), new_packages.get(package)
        if before != after:
            lines.append(f"package {package}: {before or '(none)'} -> {after or '(removed)'}")
    pairs = [(name, name) for name in set(old.files) & set(new.files) - engines] + list(renamed.items())
    changes = [] if verbatim else value_changes(old, new)
    # The code first; the README, bundle.json and SHA256SUMS, which follow from it, last.
    for before, after in sorted(pairs, key=lambda pair: (pair[1] in RECORDS, pair[1])):
        a, b = old.files[before], new.files[after]
        if a == b:
            continue
        name = after if before == after else f"{before} -> {after}"
        old_text, new_text = _text(before, a), _text(after, b)
        if old_text is not None and old_text == new_text:
            lines.append(
                f"file changed: {name} (the same text in another encoding or byte order mark: {_form(a)} -> {_form(b)})"
            )
            continue
        if old_text is None or new_text is None:
            lines.append(
                f"file changed: {name} (binary: SHA-256 {hashlib.sha256(a).hexdigest()[:16]}... -> "
                f"{hashlib.sha256(b).hexdigest()[:16]}..., {len(a)} -> {len(b)} bytes)"
            )
            continue
        if not changes:
            lines += unified(before, old_text, new_text, after)
            continue
        moved = put_in(old_text, changes)
        quoted = sum(1 for a, b in zip(old_text.splitlines(), moved.splitlines(), strict=True) if a != b)
        counted = f"{quoted} line{'' if quoted == 1 else 's'}"
        if moved == new_text:
            lines.append(f"file changed: {name} (only the new inputs' values, in {counted})")
        elif quoted == 0:
            lines += unified(before, old_text, new_text, after)
        else:
            lines.append(f"file changed: {name} ({counted} only by the new inputs' values; the rest:)")
            lines += unified(f"{before} (new values put in)", moved, new_text, after)
    return lines + engine_section
