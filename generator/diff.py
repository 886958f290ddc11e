"""gen-bundle diff OLD NEW: what a re-reviewer reads before approving a new bundle.

First what changed in plain words (inputs, generator version, the engine, files, the
hosts block, the settings of both tasks - the logon task and the broker's boot task -, the
broker program's code, the environment's packages), then a unified diff of each changed text
file: the task XML decoded from UTF-16, line endings shown only where they changed. The
engine, the same in every bundle of a version, is one unit: "engine unchanged" between two
bundles of one version, else its own section, last, whatever its file name. The broker
program (NAME.broker.py) is a header of values above code that is the same in every bundle of
a version: a line says whether that code changed, since it runs at boot as LOCAL SERVICE and
holds the bundle's address.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
import xml.etree.ElementTree as ElementTree

from .bundle import Bundle, read_bundle
from .bundle_format import BUNDLE_JSON, ENV_LOCK, HOSTS_FILE, README, SHA256SUMS
from .signature import strip_signature
from .spec import DECLARED

TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
TEXT_SUFFIXES = (".ps1", ".psm1", ".bat", ".py", ".md", ".txt", ".json", ".toml", ".xml")
WELL_KNOWN = {
    "S-1-5-32-545": "BUILTIN\\Users",
    "S-1-5-32-544": "BUILTIN\\Administrators",
    "S-1-5-18": "SYSTEM",
    "S-1-5-19": "LOCAL SERVICE",
    "S-1-5-20": "NETWORK SERVICE",
}
# The broker's files (templates/python/broker.py below a header; templates/broker.task.xml.j2).
# A --name is one DNS label, without a dot: NAME.task.xml is the logon task, NAME.broker.task.xml
# the broker's.
BROKER_SUFFIX = ".broker.py"
BROKER_TASK_SUFFIX = ".broker.task.xml"
TASK_SUFFIX = ".task.xml"
CODING = re.compile(r"^[ \t\f]*#.*?coding[:=]")


def _text(name: str, data: bytes) -> str | None:
    if not name.endswith(TEXT_SUFFIXES) and name != SHA256SUMS:
        return None
    try:
        if data.startswith(b"\xff\xfe"):
            return data[2:].decode("utf-16-le")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def task_settings(data: bytes | None) -> dict[str, str]:
    """The settings of a task XML a reviewer weighs, in words: who it runs as (and with which
    privileges and which SID of its own), when, what."""
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

    principals, sid_types, privileges = [], [], []
    for principal in root.findall("t:Principals/t:Principal", TASK_NS):
        group, user = text(principal, "t:GroupId"), text(principal, "t:UserId")
        if group:
            who = f"group {group} ({WELL_KNOWN.get(group, group)})"
        elif user in WELL_KNOWN:
            who = f"user {user} ({WELL_KNOWN[user]})"
        else:
            who = f"user {user}"
        principals.append(f"{who}, run level {text(principal, 't:RunLevel')} (id {principal.get('id', '')})")
        sid_types.append(text(principal, "t:ProcessTokenSidType"))
        held = [(p.text or "").strip() for p in principal.findall("t:RequiredPrivileges/t:Privilege", TASK_NS)]
        privileges.append(", ".join(held) if held else "")
    actions = root.find("t:Actions", TASK_NS)
    commands = [
        f"{text(e, 't:Command')} {text(e, 't:Arguments')}".strip() for e in root.findall("t:Actions/*", TASK_NS)
    ]
    triggers = []
    for trigger in root.findall("t:Triggers/*", TASK_NS):
        said = f"{trigger.tag.split('}')[-1]} {text(trigger, 't:UserId')}".strip()
        delay = text(trigger, "t:Delay")
        triggers.append(f"{said} (delay {delay})" if delay else said)
    path = value("t:RegistrationInfo/t:URI")
    if path and "Unrestricted" in sid_types:
        from .layout import task_sid

        path += f" (its own SID: {task_sid(path)})"
    restart = root.find("t:Settings/t:RestartOnFailure", TASK_NS)
    return {
        "path": path or "(not set)",
        "runs as": "; ".join(principals) or "(no principal)",
        # Absent, a task gets every privilege its account has; Unrestricted gives it a SID of its own.
        "own SID (ProcessTokenSidType)": "; ".join(kind or "(not set)" for kind in sid_types) or "(not set)",
        "privileges (RequiredPrivileges)": "; ".join(held or "(not set: all its account has)" for held in privileges)
        or "(not set: all its account has)",
        "actions run as": actions.get("Context", "") if actions is not None else "",
        "starts at": "; ".join(triggers) or "(no trigger)",
        "command": " ; ".join(commands) or "(no action)",
        "working directory": value("t:Actions/t:Exec/t:WorkingDirectory"),
        "more than one instance": value("t:Settings/t:MultipleInstancesPolicy"),
        "time limit": value("t:Settings/t:ExecutionTimeLimit"),
        "restart on failure": (
            f"every {text(restart, 't:Interval')}, {text(restart, 't:Count')} times" if restart is not None else "no"
        ),
    }


def _task_file(bundle: Bundle) -> bytes | None:
    """The logon task: NAME.task.xml, not the broker's NAME.broker.task.xml."""
    return next(
        (
            data
            for name, data in bundle.files.items()
            if name.endswith(TASK_SUFFIX) and not name.endswith(BROKER_TASK_SUFFIX)
        ),
        None,
    )


def _broker_task_file(bundle: Bundle) -> bytes | None:
    return next((data for name, data in bundle.files.items() if name.endswith(BROKER_TASK_SUFFIX)), None)


def broker_parts(text: str) -> tuple[str, str]:
    """The broker program's header of '#' lines (this bundle's values) and its code below them, the
    same in every bundle of a version. A comment that declares the source encoding (PEP 263)
    changes how Python reads the rest: it is code."""
    lines = text.splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if not line.startswith("#") or CODING.match(line)), len(lines))
    return "".join(lines[:header]), "".join(lines[header:])


def _broker(bundle: Bundle) -> tuple[str, str] | None:
    """The broker program's file name and its code."""
    name = next((name for name in bundle.files if name.endswith(BROKER_SUFFIX)), None)
    if name is None:
        return None
    text = _text(name, bundle.files[name])
    if text is None:
        return name, "(not readable as text: " + hashlib.sha256(bundle.files[name]).hexdigest() + ")"
    return name, broker_parts(text)[1]


def _broker_lines(old: Bundle, new: Bundle) -> list[str]:
    """Whether the broker program's code changed, in one line: it runs at boot as LOCAL SERVICE and
    holds the bundle's address, so a reviewer is told even when its file was renamed with --name."""
    before, after = _broker(old), _broker(new)

    def code(broker: tuple[str, str]) -> str:
        return f"{broker[0]} (code SHA-256 {hashlib.sha256(broker[1].encode('utf-8')).hexdigest()})"

    if before is None:
        return [f"broker program added: {code(after)}"] if after else []
    if after is None:
        return [f"broker program removed: {code(before)}"]
    if before[1] == after[1]:
        return [f"broker program code unchanged: {code(after)}"]
    return [f"broker program code changed: {code(before)} -> {code(after)}; its diff is below"]


def _shown(value: object) -> str:
    """An input's value as the command line takes it: a value not set (None, or missing from an
    older bundle.json) reads "(not set)", not Python's None."""
    return "(not set)" if value is None else str(value)


def _settings_lines(label: str, old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line for each setting that differs, a task that is on one side only included."""
    keys = list(new) + [key for key in old if key not in new]
    return [
        f"{label} {key}: {old.get(key, '(none)')} -> {new.get(key, '(none)')}"
        for key in keys
        if old.get(key) != new.get(key)
    ]


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
RECORDS = (README, BUNDLE_JSON, SHA256SUMS)


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


# The inputs whose values a bundle's files quote (and the URL made of two of them): those with a
# value of the user's own, not a choice, a switch or a list. A line that differs from the old one
# only by these is a line the inputs' lines above already said.
QUOTED_INPUTS = tuple(
    name for name, option in DECLARED.items() if not (option.choices or option.switch or option.repeat)
)


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
        before, after = old.inputs.get(key), new.inputs.get(key)
        if before != after:
            lines.append(f"input {key}: {_shown(before)} -> {_shown(after)}")
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
    lines += _settings_lines("task", task_settings(_task_file(old)), task_settings(_task_file(new)))
    lines += _broker_lines(old, new)
    lines += _settings_lines(
        "broker task", task_settings(_broker_task_file(old)), task_settings(_broker_task_file(new))
    )
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
        if old_text is not None and new_text is not None and after.endswith(BROKER_SUFFIX):
            (old_header, old_code), (new_header, new_code) = broker_parts(old_text), broker_parts(new_text)
            if old_code == new_code and old_header != new_header and _form(a) == _form(b):
                # Its code is the same ("broker program code unchanged" above): its header is the diff,
                # and no value put into the code can show as a change that is none.
                name += " (its header; the code below it unchanged)"
                before, after, old_text, new_text = f"{before} header", f"{after} header", old_header, new_header
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
