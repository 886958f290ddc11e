"""What is the same in every bundle of this version: roots, timings, exit codes, file names.

Templates read these as ``const``; the names and paths of one bundle, derived from its spec,
are generator/layout.py's.
"""

from __future__ import annotations

from .winpath import WinPath

# jupyter_core before this loads settings and kernels from %ProgramData%\\jupyter (CVE-2025-30167).
JUPYTER_CORE_MINIMUM = "5.8.1"
# Exit code the server uses when the process that started it is gone (the task
# was stopped): the launcher then ends instead of starting a new server.
LAUNCHER_GONE_EXIT = 86
# Restart back-off of the launcher, in seconds: first wait, and the cap.
BACKOFF_FIRST = 5
BACKOFF_CAP = 300
# How often a second launcher of the same user checks whether the first has ended (one
# CreateFileW each time: the launcher's Python waits between, and Windows has no wait for a file's
# sharing to end).
LOCK_RETRY = 5
# A server that ran this long resets the back-off to BACKOFF_FIRST.
STABLE_AFTER = 60
# How long install.ps1 waits for a server it started to answer: a first start
# (no bytecode cache under Program Files, antivirus scanning every file) is slow.
PROBE_SECONDS = 90
# Exit codes of install.ps1 and uninstall.ps1, for Group Policy, SCCM and Intune reporting.
EXIT_TAMPERED = 2  # a file differs from SHA256SUMS: the bundle changed after review
EXIT_NOT_ADMIN = 3  # not run elevated
EXIT_PREFLIGHT = 4  # a check before any change failed; nothing was changed
EXIT_NO_ANSWER = 5  # installed, but the server did not answer for the user who is logged on
EXIT_UNSAFE = 6  # a security check failed where the bundle is installed: its tasks were disabled, its processes stopped
EXIT_BUSY = 1618  # another gen-bundle run held the lock too long (Windows Installer's "another install is in progress", which Intune retries)
EXIT_FAILURE = 1603  # anything else (the Windows Installer code for a fatal error)
# Each run of install.ps1 and uninstall.ps1 writes its outcome to the Application event log
# under this source: event ID = the script's base + the exit code (EVENT_OFFSETS for the
# Windows Installer codes), which Group Policy, reporting no exit code, leaves to read there.
EVENT_SOURCE = "gen-bundle"
EVENT_BASES = {"install.ps1": 1000, "uninstall.ps1": 2000}
EVENT_OFFSETS = {EXIT_BUSY: 18, EXIT_FAILURE: 99}
# How long install.ps1 or uninstall.ps1 waits for another gen-bundle run to end: well within
# the 600 s that Group Policy gives a startup script by default.
LOCK_WAIT_SECONDS = 300
# In STATE_ROOT: the file one gen-bundle run at a time holds open. Not a DNS label (it has a
# dot), so no bundle's state folder can have its name.
LOCK_FILE = "run.lock"
# How many of the last lines of a user's launcher.log install.ps1 prints when it exits EXIT_NO_ANSWER.
LOG_TAIL_LINES = 15
# Launcher log size at which it is rotated (one old copy is kept).
LOG_ROTATE_BYTES = 1024 * 1024
# The server's output within one run: past this size server.log moves to server.1.log.
SERVER_LOG_BYTES = 1024 * 1024

# How many logs of each script's runs the state folder's logs keep.
KEEP_LOGS = 30
# How many of a bundle's hosts backups (hosts.gen-bundle-<name>-<time>.bak) stay beside hosts.
KEEP_HOSTS_BACKUPS = 3

INSTALL_ROOT = WinPath("ProgramFiles", "gen-bundle")
# An administrator's "off": below this key, one per bundle (its name), the DWORD Enabled = 0.
# The Policies tree is writable by administrators only and shared by 32- and 64-bit programs.
POLICY_ROOT = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\gen-bundle"
# The install's own state (receipt, logs of each run): under %ProgramFiles%, where users cannot
# create anything, not under %ProgramData%, where any user can create the folder first.
STATE_ROOT = INSTALL_ROOT.join("state")
START_MENU = WinPath("ProgramData", "Microsoft\\Windows\\Start Menu\\Programs")
# Jupyter's machine-wide folder: every user's server reads settings and kernels from it.
JUPYTER_SHARED = WinPath("ProgramData", "jupyter")
TASK_FOLDER = "\\gen-bundle\\"
# The Author of every task a bundle registers: install.ps1, uninstall.ps1 and detect.ps1 take a
# task of the bundle's name for theirs only when it names this.
TASK_AUTHOR = "gen-bundle"

# The files of each user's state folder (%LOCALAPPDATA%\\gen-bundle\\<name>), by what they are: the
# launcher, the server's settings, the guard, install.ps1 and the README name each from here.
USER_FILES = {
    "launcher_log": "launcher.log",  # the launcher's log: starts, exits, problems and their fixes
    "launcher_log_old": "launcher.log.1",  # the launcher's log before its last rotation
    "launcher_lock": "launcher.lock",  # held open by the running launcher
    "server_log": "server.log",  # the server's output of this run
    "server_log_old": "server.1.log",  # its earlier output
    "registration": "registration.json",  # this run's port and secret: this user and the broker read it
    "stable": "stable",  # marks a server that ran STABLE_AFTER seconds
    "runtime": "runtime",  # Jupyter's runtime folder
    "pycache": "pycache",  # the bytecode of an --env environment, compiled for this user
}

# The environment variables gen-bundle itself reads (on the machine that renders, not the target):
# where --env's cache is, and the password of a signing key.
CACHE_VARIABLE = "GEN_BUNDLE_CACHE_DIR"
CACHE_FOLDER = "gen-bundle"  # without CACHE_VARIABLE: this folder of $XDG_CACHE_HOME, else of ~/.cache
SIGN_PASSWORD_VARIABLE = "GEN_BUNDLE_SIGN_PASSWORD"
