"""The engine's source, templates/engine/, and the one file every bundle of a version loads.

The source is a PowerShell module a developer can open, lint and ``Import-Module`` as it is:
engine.psm1 dot-sources values.ps1, then each part in the order of its ``$EngineParts`` list.
A bundle carries the same code as one file, so that a reviewer recognises it by one SHA-256:
this header, the values, then the parts in that list's order, each as it is. The values come
from generator/constants.py here, and nowhere else: values.ps1 is written from them too
(tests/test_golden.py fails when it is stale).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from . import constants as const
from . import escape
from .bundle_format import HOSTS_FILE, SHA256SUMS, engine_file

FOLDER = "engine"  # in templates/
LOADER = "engine.psm1"
VALUES = "values.ps1"
SUFFIX = ".ps1"  # of each part

# The loader's list, as the build reads it: one quoted part name a line, nothing else.
_PARTS = r"(?m)^\$EngineParts = @\(\n((?:    '[a-z][a-z-]*'\n)+)\)$"  # compiled on first use (re caches it)

_HEADER = """\
# gen-bundle {version}: the engine of every bundle this version makes.
#
# install.ps1, uninstall.ps1 and detect.ps1 hold a bundle's values and its steps, in order;
# this module holds what each step does. It is the same file, byte for byte, in every bundle
# of gen-bundle {version}, whatever its inputs: a reviewer who approved it once recognises it by
# its SHA-256 (the bundle's README and bundle.json give it). The scripts load it only from the
# bytes they checked: install.ps1 and uninstall.ps1 from their own bundle (its SHA-256 is written
# in them), detect.ps1 from the copy install.ps1 keeps in the bundle's state folder.
#
# In a bundle without --env, the functions of the part "environment" below never run (the
# scripts of such a bundle call none of them).
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

"""

_VALUES_NOTICE = """\
# The values the engine's parts read, as the engine of gen-bundle {version} holds them. Written from
# generator/constants.py (generator/engine_source.py): edit them there, then rewrite this file with
# GEN_BUNDLE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py (tests/test_golden.py fails
# while it is stale). engine.psm1 dot-sources it before the parts.
#
# PSScriptAnalyzer reads one file at a time: here it would call every value assigned and never
# used, as the parts that read them are other files. The built engine holds the values and the
# parts in one file, and needs no such line.
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseDeclaredVarsMoreThanAssignments', '')]
param()

"""


def values(version: str) -> list[tuple[str, str, str]]:
    """Each value the engine reads: its variable, its PowerShell literal and what it is for."""
    text, ps = escape.ps_text, escape.ps
    return [
        ("EngineVersion", ps(version), ""),
        ("EngineFile", ps(engine_file(version)), ""),
        ("InstallRoot", ps(const.INSTALL_ROOT), "each bundle's install folder is below it"),
        ("StateRoot", ps(const.STATE_ROOT), "each bundle's receipt and logs, administrators only"),
        ("JupyterShared", ps(const.JUPYTER_SHARED), ""),
        (
            "PolicyRoot",
            ps(const.POLICY_ROOT),
            "below it, a key per bundle: the DWORD Enabled = 0 turns the bundle off",
        ),
        ("TaskFolder", ps(const.TASK_FOLDER), ""),
        (
            "TaskAuthor",
            ps(const.TASK_AUTHOR),
            "a task of the bundle's name is the bundle's only when its Author is this",
        ),
        ("ProbeSeconds", ps(const.PROBE_SECONDS), "how long install.ps1 waits for a server it started to answer"),
        (
            "JupyterCoreMinimum",
            ps(const.JUPYTER_CORE_MINIMUM),
            "older ones read %ProgramData%\\jupyter (CVE-2025-30167)",
        ),
        (
            "LogTailLines",
            ps(const.LOG_TAIL_LINES),
            f"lines of a user's launcher log printed with exit code {text(const.EXIT_NO_ANSWER)}",
        ),
        ("LauncherLogFile", ps(const.USER_FILES["launcher_log"]), "in each user's state folder: the launcher's log"),
        ("ServerLogFile", ps(const.USER_FILES["server_log"]), "beside it: the server's output"),
        ("SumsFile", ps(SHA256SUMS), "in the bundle: each file's SHA-256"),
        ("HostsLinesFile", ps(HOSTS_FILE), "in the bundle: the lines of the hosts block"),
        ("EventSource", ps(const.EVENT_SOURCE), "the Application event log's source of every run's outcome"),
        (
            "EventInstall",
            ps(const.EVENT_BASES["install.ps1"]),
            "its event IDs: this + the exit code (install.ps1), or",
        ),
        (
            "EventUninstall",
            ps(const.EVENT_BASES["uninstall.ps1"]),
            "this + the exit code (uninstall.ps1), but",
        ),
        (
            "EventBusy",
            ps(const.EVENT_OFFSETS[const.EXIT_BUSY]),
            f"+ this for exit code {text(const.EXIT_BUSY)}, and",
        ),
        (
            "EventFailure",
            ps(const.EVENT_OFFSETS[const.EXIT_FAILURE]),
            f"+ this for {text(const.EXIT_FAILURE)} (or any other code of 100 or more)",
        ),
        ("LockFile", ps(const.LOCK_FILE), "in $StateRoot: held open by the one gen-bundle run of the machine"),
        (
            "LockWaitSeconds",
            ps(const.LOCK_WAIT_SECONDS),
            "how long a run waits for another gen-bundle run to end",
        ),
        ("KeepLogs", ps(const.KEEP_LOGS), "logs of earlier runs kept in the state folder's logs"),
        ("KeepHostsBackups", ps(const.KEEP_HOSTS_BACKUPS), "a bundle's backups kept beside the hosts file"),
        ("ExitTampered", ps(const.EXIT_TAMPERED), "a file differs from SHA256SUMS: the bundle changed after review"),
        ("ExitNotAdmin", ps(const.EXIT_NOT_ADMIN), "not run elevated"),
        ("ExitPreflight", ps(const.EXIT_PREFLIGHT), "a check before any change failed; nothing was changed"),
        (
            "ExitNoAnswer",
            ps(const.EXIT_NO_ANSWER),
            "installed, but the server did not answer for the user who is logged on",
        ),
        (
            "ExitUnsafe",
            ps(const.EXIT_UNSAFE),
            "a security check failed where the bundle is installed: its tasks are disabled",
        ),
        ("ExitBusy", ps(const.EXIT_BUSY), "another gen-bundle run held the lock too long: try again later"),
        ("ExitFailure", ps(const.EXIT_FAILURE), "anything else (the Windows Installer code for a fatal error)"),
    ]


def values_block(version: str) -> str:
    """The values as PowerShell assignments, under their heading: the same text in the built engine
    and in values.ps1."""
    lines = ["# ==== The same in every bundle of this version ====\n"]
    for name, literal, comment in values(version):
        lines.append(f"{'$' + name:<18} = {literal}" + (f"  # {escape.ps_text(comment)}" if comment else "") + "\n")
    return "".join(lines)


def values_file(version: str) -> str:
    """templates/engine/values.ps1 as it must read: what a developer's Import-Module of the
    source loads in place of the built engine's values."""
    return _VALUES_NOTICE.format(version=escape.ps_text(version)) + values_block(version)


def part_names(loader: str) -> list[str]:
    """The parts engine.psm1 loads, in its order: the one list, which the build follows too."""
    found = re.findall(_PARTS, loader)
    if len(found) != 1:
        raise ValueError(f"{LOADER}: no single '$EngineParts = @(' list of one quoted part name a line")
    return [line.strip().strip("'") for line in found[0].splitlines()]


def build(version: str, read: Callable[[str], str]) -> str:
    """The engine of ``version`` as text (LF line ends): header, values, then each part as it is,
    a blank line between two. ``read`` gives a file of the source folder by name."""
    parts = [read(name + SUFFIX).removesuffix("\n") for name in part_names(read(LOADER))]
    return _HEADER.format(version=escape.ps_text(version)) + values_block(version) + "\n" + "\n\n".join(parts) + "\n"
