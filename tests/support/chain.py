"""The links between the task XML and cmd.exe, followed as Windows follows them.

Task Scheduler expands %variables% in the Exec action's Command, Arguments and
WorkingDirectory, and starts ``Command Arguments`` in WorkingDirectory
(%windir%\\System32 when it is empty). When Command is conhost.exe, conhost
splits its own command line with CommandLineToArgvW, consumes its switches,
and joins the remaining fields with spaces into its client's command line,
which it expands once more (ExpandEnvironmentStringsW) and starts with
CreateProcessW. How it joins depends on its version (microsoft/terminal,
src/host/ConsoleArguments.cpp, ``_GetClientCommandline``): before July 2019
(PR #1815) the fields as they are; since then each through ``EscapeArgument``.
Windows 10 and 11 builds in one fleet carry both.

The splitting and the final CreateProcessW run in wine through a mingw helper
(chain_helper.c), so Windows' own functions do them; the two joins and the
switch list are modelled here from conhost's source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# conhost switches that take the next field as their value, and those that do not.
CONHOST_VALUE_SWITCHES = frozenset(
    {"--server", "--signal", "--width", "--height", "--vtmode", "--feature", "--textMeasurement"}
)
CONHOST_FLAG_SWITCHES = frozenset(
    {
        "--headless",
        "--inheritcursor",
        "-ForceV1",
        "-ForceNoHandoff",
        "-Embedding",
        "--resizeQuirk",
        "--win32input",
        "--ambiguousIsWide",
        "--passthrough",
    }
)

JOIN_AS_IS = "conhost before July 2019: fields joined as they are"
JOIN_ESCAPED = "conhost since July 2019: fields joined through EscapeArgument"
DIRECT = "no conhost: Task Scheduler starts the line itself"


def escape_argument(field: str) -> str:
    """conhost's EscapeArgument: quotes around a field with a space or tab,
    a backslash before each quote (and the backslashes just before it doubled),
    trailing backslashes doubled inside added quotes, and "" for an empty field."""
    if field == "":
        return '""'
    quoted = " " in field or "\t" in field
    out: list[str] = []
    slashes = 0
    for ch in field:
        if ch == "\\":
            slashes += 1
            out.append(ch)
        elif ch == '"':
            out.append("\\" * slashes + '\\"')
            slashes = 0
        else:
            slashes = 0
            out.append(ch)
    if quoted:
        return '"' + "".join(out) + "\\" * slashes + '"'
    return "".join(out)


def client_fields(fields: list[str]) -> list[str]:
    """What conhost passes on: its argv after argv[0], less its own switches."""
    rest = fields[1:]
    i = 0
    while i < len(rest):
        field = rest[i]
        if field == "--":
            return rest[i + 1 :]
        if field in CONHOST_VALUE_SWITCHES:
            i += 2
        elif field in CONHOST_FLAG_SWITCHES or field.startswith("0x") or field.startswith("\\??\\"):
            i += 1
        else:
            return rest[i:]
    return []


def expand(text: str, environment: dict[str, str]) -> str:
    """ExpandEnvironmentStringsW: %NAME% of a defined variable (any case), else left as it is."""
    lowered = {name.lower(): value for name, value in environment.items()}
    return re.sub(r"%([^%]+)%", lambda m: lowered.get(m.group(1).lower(), m.group(0)), text)


@dataclass(frozen=True)
class Action:
    """A task's Exec action, as written in the task XML."""

    command: str
    arguments: str
    working_directory: str

    @classmethod
    def from_task_xml(cls, data: bytes) -> Action:
        from lxml import etree

        ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
        root = etree.fromstring(data)
        execs = root.findall("t:Actions/t:Exec", ns)
        assert len(execs) == 1, "the task has exactly one Exec action"

        def text(name: str) -> str:
            node = execs[0].find(f"t:{name}", ns)
            return "" if node is None or node.text is None else node.text

        return cls(text("Command"), text("Arguments"), text("WorkingDirectory"))


@dataclass(frozen=True)
class ClientStart:
    """One way the last link can go: the folder and the exact line CreateProcessW gets."""

    how: str
    directory: str
    line: str


def client_starts(action: Action, environment: dict[str, str], split) -> list[ClientStart]:
    """Every command line that can reach the client (cmd.exe) on a supported Windows.

    ``split`` is Windows' CommandLineToArgvW (run in wine).
    """
    command = expand(action.command, environment)
    arguments = expand(action.arguments, environment)
    directory = expand(action.working_directory, environment) or expand("%windir%\\System32", environment)
    program = f'"{command}"' if " " in command else command
    line = f"{program} {arguments}" if arguments else program
    if command.lower().rsplit("\\", 1)[-1] != "conhost.exe":
        return [ClientStart(DIRECT, directory, line)]
    fields = client_fields(split(line))
    return [
        ClientStart(JOIN_AS_IS, directory, expand(" ".join(fields), environment)),
        ClientStart(JOIN_ESCAPED, directory, expand(" ".join(escape_argument(f) for f in fields), environment)),
    ]
