# The values the engine's parts read, as the engine of gen-bundle 0.3.18 holds them. Written from
# generator/constants.py (generator/engine_source.py): edit them there, then rewrite this file with
# GEN_BUNDLE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py (tests/test_golden.py fails
# while it is stale). engine.psm1 dot-sources it before the parts.
#
# PSScriptAnalyzer reads one file at a time: here it would call every value assigned and never
# used, as the parts that read them are other files. The built engine holds the values and the
# parts in one file, and needs no such line.
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseDeclaredVarsMoreThanAssignments', '')]
param()

# ==== The same in every bundle of this version ====
$EngineVersion     = '0.3.18'
$EngineFile        = 'gen-bundle-0.3.18.psm1'
$InstallRoot       = (Join-Path $env:ProgramFiles 'gen-bundle')  # each bundle's install folder is below it
$StateRoot         = (Join-Path $env:ProgramFiles 'gen-bundle\state')  # each bundle's receipt and logs, administrators only
$JupyterShared     = (Join-Path $env:ProgramData 'jupyter')
$PolicyRoot        = 'HKEY_LOCAL_MACHINE\SOFTWARE\Policies\gen-bundle'  # below it, a key per bundle: the DWORD Enabled = 0 turns the bundle off
$TaskFolder        = '\gen-bundle\'
$TaskAuthor        = 'gen-bundle'  # a task of the bundle's name is the bundle's only when its Author is this
$ProbeSeconds      = 90  # how long install.ps1 waits for a server it started to answer
$JupyterCoreMinimum = '5.8.1'  # older ones read %ProgramData%\jupyter (CVE-2025-30167)
$LogTailLines      = 15  # lines of a user's launcher log printed with exit code 5
$LauncherLogFile   = 'launcher.log'  # in each user's state folder: the launcher's log
$ServerLogFile     = 'server.log'  # beside it: the server's output
$SumsFile          = 'SHA256SUMS'  # in the bundle: each file's SHA-256
$HostsLinesFile    = 'hosts.txt'  # in the bundle: the lines of the hosts block
$EventSource       = 'gen-bundle'  # the Application event log's source of every run's outcome
$EventInstall      = 1000  # its event IDs: this + the exit code (install.ps1), or
$EventUninstall    = 2000  # this + the exit code (uninstall.ps1), but
$EventBusy         = 18  # + this for exit code 1618, and
$EventFailure      = 99  # + this for 1603 (or any other code of 100 or more)
$LockFile          = 'run.lock'  # in $StateRoot: held open by the one gen-bundle run of the machine
$LockWaitSeconds   = 300  # how long a run waits for another gen-bundle run to end
$KeepLogs          = 30  # logs of earlier runs kept in the state folder's logs
$KeepHostsBackups  = 3  # a bundle's backups kept beside the hosts file
$ExitTampered      = 2  # a file differs from SHA256SUMS: the bundle changed after review
$ExitNotAdmin      = 3  # not run elevated
$ExitPreflight     = 4  # a check before any change failed; nothing was changed
$ExitNoAnswer      = 5  # installed, but the server did not answer for the user who is logged on
$ExitUnsafe        = 6  # a security check failed where the bundle is installed: its tasks are disabled
$ExitBusy          = 1618  # another gen-bundle run held the lock too long: try again later
$ExitFailure       = 1603  # anything else (the Windows Installer code for a fatal error)
