# gen-bundle 0.3.18: the engine of every bundle this version makes.
#
# install.ps1, uninstall.ps1 and detect.ps1 hold a bundle's values and its steps, in order;
# this module holds what each step does. It is the same file, byte for byte, in every bundle
# of gen-bundle 0.3.18, whatever its inputs: a reviewer who approved it once recognises it by
# its SHA-256 (the bundle's README and bundle.json give it). The scripts load it only from the
# bytes they checked: install.ps1 and uninstall.ps1 from their own bundle (its SHA-256 is written
# in them), detect.ps1 from the copy install.ps1 keeps in the bundle's state folder.
#
# In a bundle without --env, the functions of the part "environment" below never run (the
# scripts of such a bundle call none of them).
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

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

# ---- engine: the values of the bundle that runs it, failures as exit codes, every change asked for ----
# A module sees neither the variables nor the $PSCmdlet of the script that imports it: the
# script hands them over once (Initialize-GenBundle), and the functions below read them as
# this module's own. Nothing here exits: a failure is thrown with its exit code, and the
# script's one catch turns it into that code (Resolve-BundleFailure).

$PlanEntries = New-Object System.Collections.Generic.List[object]  # every change asked for, in order (-Plan)

function Initialize-GenBundle {
    # $Values: the bundle's values (the script's values block), the script's own (Root, ScriptName)
    # and its -WhatIf and -Verbose ($WhatIfPreference, $VerbosePreference), which the cmdlets
    # called here would not see otherwise. $Caller: the script's $PSCmdlet, which answers
    # ShouldProcess for the script's -WhatIf and -Confirm.
    param([hashtable]$Values, [object]$Caller)
    foreach ($name in $Values.Keys) {
        Set-Variable -Scope Script -Name $name -Value $Values[$name] -WhatIf:$false  # the values may set $WhatIfPreference
    }
    $script:Cmdlet = $Caller
}

function Get-EngineLanguageMode {
    # The language mode this engine's functions run in: install.ps1 and uninstall.ps1 load the engine
    # from its checked bytes, and load it as a file instead when this is not FullLanguage.
    return [string]$ExecutionContext.SessionState.LanguageMode
}

function Stop-Bundle {
    # Ends the run with $Code: the script's catch writes $Message and exits with the code.
    param([int]$Code, [string]$Message)
    $failure = New-Object InvalidOperationException($Message)
    $failure.Data['GenBundleExitCode'] = $Code
    throw $failure
}

function Resolve-BundleFailure {
    # The exit code of what ended the run, its message written: a code Stop-Bundle gave, 4 for a
    # hosts file that cannot be edited (InvalidDataException, nothing changed yet), else 1603.
    param([System.Management.Automation.ErrorRecord]$Record)
    $failure = $Record.Exception
    $code = $ExitFailure
    if ($failure.Data.Contains('GenBundleExitCode')) {
        $code = [int]$failure.Data['GenBundleExitCode']
    } elseif ($failure -is [IO.InvalidDataException]) {
        $code = $ExitPreflight
    }
    $Run.ExitCode = $code  # for the run's event (Write-RunEvent)
    $Run.ExitMessage = $failure.Message
    if ($code -eq 0) {
        Write-Warning $failure.Message
    } elseif ($failure -is [IO.InvalidDataException]) {
        $Host.UI.WriteErrorLine("ERROR: $($failure.Message). Nothing was changed.")
    } else {
        $Host.UI.WriteErrorLine("ERROR: $($failure.Message)")
    }
    return $code
}

function Confirm-Change {
    # Every change the scripts make asks here first, and runs only when this returns $true: the
    # script's ShouldProcess (-WhatIf shows it and skips it, -Confirm asks) with what changes and
    # how, the ACL in words and as SDDL; and the change goes into the plan (-Plan), with the step
    # of uninstall.ps1 that takes it back. $Kind is one of the kinds the bundle's README lists.
    # The plan records the answer too: yes, no (-Confirm declined) or whatif (shown only).
    param([string]$Kind, [string]$Target, [string]$Action, [string]$Acl = '', [string]$Undo = '')
    $entry = [pscustomobject][ordered]@{ kind = $Kind; target = $Target; action = $Action; acl = $Acl; undo = $Undo; answer = 'whatif' }
    $PlanEntries.Add($entry)
    $text = $Action
    if ($Acl) {
        $text += "; ACL: $Acl"
    }
    $yes = $Cmdlet.ShouldProcess($Target, $text)
    if ($yes) {
        $entry.answer = 'yes'
    } elseif (-not $WhatIfPreference) {
        $entry.answer = 'no'
    }
    return $yes
}

function Format-FolderSecurity {
    # A folder's DirectorySecurity as the reviewer reads it, in words, then as SDDL for the record.
    param([System.Security.AccessControl.DirectorySecurity]$Security)
    $names = @{ 'S-1-5-18' = 'SYSTEM'; 'S-1-5-32-544' = 'Administrators'; 'S-1-5-32-545' = 'Users' }
    $rules = foreach ($rule in $Security.GetAccessRules($true, $false, [Security.Principal.SecurityIdentifier])) {
        $who = $rule.IdentityReference.Value
        if ($names.ContainsKey($who)) {
            $who = $names[$who]
        }
        "$who $($rule.FileSystemRights)"
    }
    $owner = $Security.GetOwner([Security.Principal.SecurityIdentifier]).Value
    if ($names.ContainsKey($owner)) {
        $owner = $names[$owner]
    }
    return "owner $owner; $(@($rules) -join ', '); nothing inherited (SDDL $($Security.GetSecurityDescriptorSddlForm('All')))"
}

function Write-BundlePlan {
    # The plan of this run, as JSON, to the file -Plan names: every change asked for, whether
    # it was made or (-WhatIf) only shown. UTF-8 without a BOM.
    param([string]$Path)
    if ($Path) {
        # A relative -Plan is below PowerShell's current folder, as for any cmdlet: .NET would take
        # the process's, which Set-Location does not change (an elevated console's is System32).
        $Path = [IO.Path]::GetFullPath([IO.Path]::Combine((Get-Location -PSProvider FileSystem).ProviderPath, $Path))
        [IO.File]::WriteAllText($Path, (ConvertTo-Json -InputObject @($PlanEntries) -Depth 3), (New-Object Text.UTF8Encoding($false)))
    }
}

# ---- base: elevation, and one run at a time ----
$Lock = $null  # the run's lock (Lock-GenBundle), which Stop-BundleRun closes

function Test-Elevated {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Confirm-Elevated {
    # Changes need an elevated prompt; -WhatIf only looks, and runs without one. The answer is
    # kept ($elevated): some checks can be made only elevated, and say so otherwise.
    param([string]$Script)
    $elevated = Test-Elevated
    $script:elevated = $elevated
    if (-not $elevated -and -not $WhatIfPreference) {
        Stop-Bundle $ExitNotAdmin "$Script must run elevated (Run as administrator, or as a computer startup script). Nothing was changed."
    }
    if (-not $elevated) {
        Write-Warning "Not elevated: this shows what would change; $Script itself needs an elevated prompt."
    }
    return $elevated
}

function Enter-BundleRun {
    # The lock of this run, taken right after the elevation check (-WhatIf, which changes nothing,
    # takes none): a run that is not elevated ends with exit $ExitNotAdmin, not waiting for another.
    if (-not $WhatIfPreference) {
        $script:Lock = Lock-GenBundle -Seconds $LockWaitSeconds
    }
}

function Exit-BundleRun {
    # The run's lock closed, once its changes are made; again at the end of every run (Stop-BundleRun).
    if ($script:Lock) {
        $script:Lock.Dispose()
        $script:Lock = $null
    }
}

function Lock-GenBundle {
    # One run of install.ps1 or uninstall.ps1 of any gen-bundle bundle at a time on this machine:
    # a startup script, Intune and an administrator may overlap, and bundles share the hosts file
    # and %ProgramData%\jupyter. The lock is a file in $StateRoot held open with no sharing; no user
    # can create or open it there (a named mutex, which 0.3.2 and earlier used, any user could
    # create first and so block every run). $InstallRoot and $StateRoot are created here when
    # missing: the one change before the preflight. Stop-BundleRun closes the file at the end of
    # the run; Windows, when the process ends, however it ends. Not obtained within $Seconds:
    # exit $ExitBusy (1618, which Intune retries later).
    param([int]$Seconds)
    $missing = @(@(@($InstallRoot, $true), @($StateRoot, $false)) | Where-Object { -not (Test-Entry $_[0]) })
    if ($missing.Count -gt 0) {
        $acl = "$InstallRoot ($(Format-FolderSecurity (New-AdminOnlySecurity -UsersRead))); $StateRoot ($(Format-FolderSecurity (New-AdminOnlySecurity)))"
        if (Confirm-Change -Kind 'state-folder' -Target $StateRoot -Action "Create the missing levels, each with its own ACL from its creation, for the lock file $LockFile that one gen-bundle run at a time holds open there" -Acl $acl -Undo 'stays: the state of every bundle, for the record') {
            foreach ($level in $missing) {
                New-AdminOnlyFolder -Path $level[0] -UsersRead:$level[1]
            }
        } else {
            Stop-Bundle 0 "$StateRoot was not created, and no run goes on without its lock there. Nothing was changed."
        }
    }
    $problem = Get-AdminOnlyProblem $StateRoot
    if ($problem) {
        Stop-Bundle $ExitPreflight "$problem, and every gen-bundle run takes its lock there as SYSTEM. Look at what is in it, then remove it. Nothing was changed."
    }
    $path = Join-Path $StateRoot $LockFile
    $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
    while ($true) {
        try {
            return [IO.File]::Open($path, [IO.FileMode]::OpenOrCreate, [IO.FileAccess]::ReadWrite, [IO.FileShare]::None)
        } catch [IO.IOException] {
            if ($_.Exception.HResult -ne -2147024864) {  # 0x80070020, ERROR_SHARING_VIOLATION: another run holds it
                throw
            }
            if ([DateTime]::UtcNow -ge $deadline) {
                Stop-Bundle $ExitBusy "another gen-bundle run (install.ps1 or uninstall.ps1, of this bundle or another) still holds $path after $Seconds s; this run is tried again later. Nothing was changed."
            }
            Start-Sleep -Seconds 1
        }
    }
}

function Write-RunEvent {
    # The run's outcome in the Application event log, under $EventSource: Group Policy reports no
    # exit code, and a fleet's runs can be read there (the event IDs: the README). Best effort: a
    # failure here only warns, and never changes the exit code. Only elevated runs write (reading
    # whether the source exists needs it); -WhatIf only shows it. The source is registered at the
    # first run on the machine; another run registering it at the same moment is no failure.
    $code = 0
    if ($Run.ContainsKey('ExitCode')) {
        $code = [int]$Run.ExitCode
    }
    $id = $EventInstall
    if ($ScriptName -eq 'uninstall.ps1') {
        $id = $EventUninstall
    }
    if ($code -eq $ExitBusy) {
        $id += $EventBusy
    } elseif ($code -eq $ExitFailure -or $code -lt 0 -or $code -ge 100) {
        $id += $EventFailure
    } else {
        $id += $code
    }
    $text = "$ScriptName of gen-bundle $EngineVersion for '$BundleName' ended with exit code $code"
    if ($Run.ContainsKey('ExitMessage')) {
        $text += ": $($Run.ExitMessage)"
    }
    $target = "the Application event log, source $EventSource"
    if ($WhatIfPreference) {
        $null = Confirm-Change -Kind 'event' -Target $target -Action "Write the run's outcome (event $id for exit code $code), registering the source first when it is not there" -Undo 'stays: the event log keeps it as its size allows'
        return
    }
    if (-not (Test-Elevated)) {
        return
    }
    try {
        # WriteEntry registers a missing source by itself: the event is written only once the source
        # is there, so that declining event-source (-Confirm) registers nothing.
        $ready = [Diagnostics.EventLog]::SourceExists($EventSource)
        if (-not $ready -and (Confirm-Change -Kind 'event-source' -Target $target -Action 'Register the source under which install.ps1 and uninstall.ps1 of every bundle write their outcome' -Undo 'stays, for every bundle (Windows PowerShell: Remove-EventLog -Source gen-bundle)')) {
            try {
                [Diagnostics.EventLog]::CreateEventSource($EventSource, 'Application')
            } catch [ArgumentException] {
                Write-Verbose 'event log: another run registered the source just now'
            }
            $ready = $true
        }
        $type = [Diagnostics.EventLogEntryType]::Information
        if ($code -eq $ExitUnsafe -or $code -eq $ExitTampered -or $code -eq $ExitFailure) {
            $type = [Diagnostics.EventLogEntryType]::Error
        } elseif ($code -ne 0) {
            $type = [Diagnostics.EventLogEntryType]::Warning
        }
        if ($ready -and (Confirm-Change -Kind 'event' -Target $target -Action "Write event ${id}: $text" -Undo 'stays: the event log keeps it as its size allows')) {
            [Diagnostics.EventLog]::WriteEntry($EventSource, $text, $type, $id)
        }
    } catch {
        Write-Warning "event log: the run's outcome was not written ($($_.Exception.Message))"
    }
}

# ---- integrity: the bundle's files against SHA256SUMS, read once ----

function Get-Sha256 {
    param([byte[]]$Bytes)
    $sha = [Security.Cryptography.SHA256]::Create()
    try {
        return ([BitConverter]::ToString($sha.ComputeHash($Bytes)) -replace '-', '').ToLowerInvariant()
    } finally {
        $sha.Dispose()
    }
}

function Read-VerifiedBundle {
    # The reviewer approved these exact bytes. Each file is read once, into memory, and
    # checked there; the script uses only these bytes afterwards, never the files again, so
    # a share that changes after the check cannot hand it other bytes. With -SumsSha256 the
    # SHA-256 of SHA256SUMS itself must be the one the deployment names outside the bundle.
    # -InPlace names files whose bytes are already installed, by their SHA-256 (the bundle's
    # environment, extracted and marked with it): when SHA256SUMS lists that same SHA-256,
    # such a file is not read again (57 MB from SYSVOL at every boot), only found there.
    # -Optional (detect.ps1): with no SHA256SUMS beside the script and no pin, there is nothing
    # to check against (Intune runs a detection script alone, without its bundle), and it
    # returns $null. A bundle that is not the one approved throws SecurityException.
    param([string]$PinnedSums, [switch]$Optional, [hashtable]$InPlace = @{})
    $sumsPath = Join-Path $BundleRoot $SumsFile
    if (-not (Test-Path -LiteralPath $sumsPath -PathType Leaf)) {
        if ($Optional -and -not $PinnedSums) {
            return $null
        }
        throw [Security.SecurityException]::new("SHA256SUMS is missing beside $ScriptName.")
    }
    $sumsBytes = [IO.File]::ReadAllBytes($sumsPath)
    $sumsSha = Get-Sha256 $sumsBytes
    if ($PinnedSums -and -not [string]::Equals($sumsSha, $PinnedSums.Trim(), [StringComparison]::OrdinalIgnoreCase)) {
        throw [Security.SecurityException]::new("SHA256SUMS has SHA-256 $sumsSha, not $($PinnedSums.Trim()) as -SumsSha256 says: the bundle is not the one approved.")
    }
    $expected = @{}
    foreach ($line in ($Latin1.GetString($sumsBytes) -split "`n")) {
        $line = $line.TrimEnd([char]13)
        if ($line.Length -eq 0) {
            continue
        }
        if ($line -cnotmatch '^([0-9a-f]{64})  (\S+)$') {
            throw [Security.SecurityException]::new("SHA256SUMS has a line that is not '<sha256>  <file>': '$line'.")
        }
        $expected[$Matches[2]] = $Matches[1]
    }
    $bundle = @{ $SumsFile = $sumsBytes }
    foreach ($file in $BundleFiles) {
        $path = Join-Path $BundleRoot $file
        if (-not $expected.ContainsKey($file) -or -not (Test-Path -LiteralPath $path -PathType Leaf)) {
            throw [Security.SecurityException]::new("$file is missing from the bundle or from SHA256SUMS.")
        }
        if ($InPlace.ContainsKey($file) -and [string]::Equals($InPlace[$file], $expected[$file], [StringComparison]::Ordinal)) {
            $bundle[$file] = $null  # installed from bytes with this SHA-256; not needed again
            continue
        }
        $bytes = [IO.File]::ReadAllBytes($path)
        if (-not [string]::Equals((Get-Sha256 $bytes), $expected[$file], [StringComparison]::Ordinal)) {
            throw [Security.SecurityException]::new("$file does not match SHA256SUMS: the bundle changed after review.")
        }
        $bundle[$file] = $bytes
    }
    return $bundle
}

# ---- hosts, read: the hosts file's bytes as text, whatever its encoding ----
# Windows reads hosts from the folder the DataBasePath value names (REG_EXPAND_SZ; Registry.GetValue
# expands it), %SystemRoot%\System32\drivers\etc unless an administrator moved it. A value that is
# not there gives '' (a property read of a silenced Get-ItemProperty's $null throws under StrictMode).
$HostsFolder = [string][Microsoft.Win32.Registry]::GetValue('HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters', 'DataBasePath', '')
if ([string]::IsNullOrEmpty($HostsFolder)) {
    $HostsFolder = Join-Path $env:SystemRoot 'System32\drivers\etc'
}
$HostsPath = Join-Path $HostsFolder 'hosts'
# A hosts file that gen-bundle cannot edit throws InvalidDataException: before any change the
# scripts exit with $ExitPreflight, detect.ps1 reports "not installed".
# Latin-1 maps every byte to one character and back, so the hosts file's bytes
# outside our block (any encoding, BOM, line endings) are written back unchanged.
$Latin1 = [Text.Encoding]::GetEncoding(28591)

function Read-HostsText {
    if (-not (Test-Path -LiteralPath $HostsPath -PathType Leaf)) {
        return ''
    }
    $bytes = [IO.File]::ReadAllBytes($HostsPath)
    if ($bytes.Length -ge 2 -and (($bytes[0] -eq 0xFF -and $bytes[1] -eq 0xFE) -or ($bytes[0] -eq 0xFE -and $bytes[1] -eq 0xFF))) {
        throw [IO.InvalidDataException]::new("$HostsPath is UTF-16; gen-bundle edits only byte-oriented hosts files")
    }
    return $Latin1.GetString($bytes)
}

# ---- hosts, edit: the bundle's marked block put in or taken out, every other byte kept ----
$Utf8Bom = [string][char]0xEF + [char]0xBB + [char]0xBF

function Set-HostsBlock {
    # Returns $Text with the bundle's marked block replaced by $Block, in place,
    # or removed when $Block is empty. Lines keep their own endings; a UTF-8 BOM stays first.
    param([string]$Text, [string[]]$Block)
    $bom = ''
    if ($Text.StartsWith($Utf8Bom, [StringComparison]::Ordinal)) {
        $bom = $Utf8Bom
        $Text = $Text.Substring(3)
    }
    $newline = "`r`n"
    if ((-not $Text.Contains("`r`n")) -and $Text.Contains("`n")) {
        $newline = "`n"
    }
    $out = New-Object System.Text.StringBuilder
    $inside = $false
    $written = $false
    foreach ($line in [regex]::Split($Text, '(?<=\n)')) {
        if ($line.Length -eq 0) {
            continue
        }
        $bare = $line.TrimEnd([char[]]"`r`n")
        if (-not $inside) {
            if ([string]::Equals($bare, $HostsBegin, [StringComparison]::Ordinal)) {
                $inside = $true
            } else {
                [void]$out.Append($line)
            }
            continue
        }
        if (-not [string]::Equals($bare, $HostsEnd, [StringComparison]::Ordinal)) {
            continue
        }
        $inside = $false
        $ending = $line.Substring($bare.Length)
        if ($Block.Count -gt 0 -and -not $written) {
            [void]$out.Append(($Block -join $newline) + $ending)
            $written = $true
        } elseif ($ending.Length -eq 0) {
            # The block closed the file without a final newline: install added the
            # newline before it, so removing the block takes that newline back too.
            $current = $out.ToString()
            if ($current.EndsWith("`r`n", [StringComparison]::Ordinal)) {
                [void]$out.Remove($out.Length - 2, 2)
            } elseif ($current.EndsWith("`n", [StringComparison]::Ordinal)) {
                [void]$out.Remove($out.Length - 1, 1)
            }
        }
    }
    if ($inside) {
        throw [IO.InvalidDataException]::new("$HostsPath has the line '$HostsBegin' but no '$HostsEnd' after it; repair it by hand")
    }
    if ($Block.Count -gt 0 -and -not $written) {
        $current = $out.ToString()
        if ($current.Length -eq 0 -or $current.EndsWith("`n", [StringComparison]::Ordinal)) {
            [void]$out.Append(($Block -join $newline) + $newline)
        } else {
            # Keep the file's missing final newline: the block goes on new lines
            # and, like the file before, ends without one.
            [void]$out.Append($newline + ($Block -join $newline))
        }
    }
    return $bom + $out.ToString()
}

function Show-Bytes {
    # $Text (one character a byte, Latin-1) as readable text: \r, \n, \t and every byte outside
    # printable ASCII as \xHH; a new line after each \n, so that lines stay lines.
    param([string]$Text)
    $out = New-Object System.Text.StringBuilder
    foreach ($ch in $Text.ToCharArray()) {
        $code = [int]$ch
        if ($code -eq 13) {
            [void]$out.Append('\r')
        } elseif ($code -eq 10) {
            [void]$out.Append("\n`n")
        } elseif ($code -eq 9) {
            [void]$out.Append('\t')
        } elseif ($code -lt 32 -or $code -gt 126 -or $code -eq 92) {
            [void]$out.Append(('\x{0:X2}' -f $code))
        } else {
            [void]$out.Append($ch)
        }
    }
    return $out.ToString()
}

function Get-ByteDiff {
    # What -WhatIf shows: the one span of bytes that differs between $Before and $After (both
    # Latin-1, one character a byte), with line endings, BOM and final newline made visible. The
    # common start and end are found by halving (CompareOrdinal on spans), not a character at a
    # time: a hosts file of blocked sites has megabytes, and a loop in PowerShell took seconds.
    param([string]$Before, [string]$After)
    $shorter = [Math]::Min($Before.Length, $After.Length)
    $low = 0  # the longest common start found so far
    $high = $shorter
    while ($low -lt $high) {
        $middle = ($low + $high + 1) -shr 1  # halfway, rounded up
        if ([string]::CompareOrdinal($Before, 0, $After, 0, $middle) -eq 0) { $low = $middle } else { $high = $middle - 1 }
    }
    $start = $low
    $low = 0  # the longest common end, not reaching into the common start
    $high = $shorter - $start
    while ($low -lt $high) {
        $middle = ($low + $high + 1) -shr 1  # halfway, rounded up
        if ([string]::CompareOrdinal($Before, $Before.Length - $middle, $After, $After.Length - $middle, $middle) -eq 0) { $low = $middle } else { $high = $middle - 1 }
    }
    $endBefore = $Before.Length - $low
    $endAfter = $After.Length - $low
    $lines = @("at byte $start of $($Before.Length) (\r\n is a Windows line end, \xEF\xBB\xBF a UTF-8 BOM):")
    foreach ($change in @(@('-', $Before.Substring($start, $endBefore - $start)), @('+', $After.Substring($start, $endAfter - $start)))) {
        if ($change[1].Length -gt 0) {
            foreach ($line in ((Show-Bytes $change[1]).TrimEnd("`n") -split "`n")) {
                $lines += "$($change[0]) $line"
            }
        }
    }
    return ($lines -join "`n")
}

function Get-HostsChange {
    # The ShouldProcess text of a hosts change: how it is written, what it keeps and deletes, and
    # the byte diff under -WhatIf, where it is read (a real run does not pay for the diff: a hosts
    # file of blocked sites has megabytes).
    param([string]$Before, [string]$After)
    $text = 'Change the hosts file: a new file written beside it is swapped in'
    if (Test-Path -LiteralPath $HostsPath -PathType Leaf) {
        $text += ", the previous one kept beside it as hosts.gen-bundle-$BundleName-<time>.bak; its attributes ($([IO.File]::GetAttributes($HostsPath))) are cleared for the swap and set again"
        $old = @(Get-OldHostsBackup -Keep ($KeepHostsBackups - 1))
        if ($old.Count -gt 0) {
            $text += "; the backups past the newest $KeepHostsBackups are deleted: $(@($old | ForEach-Object { $_.Name }) -join ', ')"
        }
    }
    if ($WhatIfPreference) {
        return "$text. Byte for byte:`n" + (Get-ByteDiff -Before $Before -After $After)
    }
    return $text
}

function Write-HostsFile {
    # Writes a temporary file beside hosts and swaps it in (the old file stays
    # beside it as a backup), so a failure never leaves hosts half-written.
    # Each attempt reads hosts first, and again just before the swap: a program that wrote it
    # in between (a VPN client, another tool; other gen-bundle runs wait for the lock) would
    # otherwise lose its lines. Changed: the next attempt starts from its new text.
    param([string[]]$Block)
    $folder = Split-Path -Parent $HostsPath
    $existedBefore = Test-Path -LiteralPath $HostsPath -PathType Leaf
    for ($attempt = 1; ; $attempt++) {
        $temp = Join-Path $folder ('hosts.gen-bundle.' + [Guid]::NewGuid().ToString('N') + '.tmp')
        try {
            $exists = Test-Path -LiteralPath $HostsPath -PathType Leaf
            if ($existedBefore -and -not $exists) {
                # Never mistake a hosts file that went missing for an empty one.
                throw [System.IO.IOException]::new("$HostsPath is missing")
            }
            $old = Read-HostsText
            $new = Set-HostsBlock -Text $old -Block $Block
            if ([string]::Equals($new, $old, [StringComparison]::Ordinal)) {
                return
            }
            [IO.File]::WriteAllBytes($temp, $Latin1.GetBytes($new))
            if (-not [string]::Equals((Read-HostsText), $old, [StringComparison]::Ordinal)) {
                throw [IO.IOException]::new("$HostsPath changed while the new one was written")
            }
            if ($exists) {
                $backup = $HostsPath + '.gen-bundle-' + $BundleName + '-' + (Get-Date -Format 'yyyyMMdd-HHmmss-fff') + '.bak'
                $attributes = [IO.File]::GetAttributes($HostsPath)
                [IO.File]::SetAttributes($HostsPath, [IO.FileAttributes]::Normal)
                try {
                    [IO.File]::Replace($temp, $HostsPath, $backup)
                } finally {
                    if (-not (Test-Path -LiteralPath $HostsPath -PathType Leaf) -and (Test-Path -LiteralPath $backup -PathType Leaf)) {
                        # ReplaceFile moved hosts aside but could not put the new one in: restore it.
                        [IO.File]::Move($backup, $HostsPath)
                    }
                    if (Test-Path -LiteralPath $HostsPath -PathType Leaf) {
                        [IO.File]::SetAttributes($HostsPath, $attributes)
                    }
                }
                Write-Output "hosts: updated $HostsPath (the previous file is kept as $backup)"
                Remove-OldHostsBackup
            } else {
                [IO.File]::Move($temp, $HostsPath)
                Write-Output "hosts: created $HostsPath"
            }
            return
        } catch [IO.InvalidDataException] {
            # hosts was read again just now, after the script's earlier changes: another program
            # made it UTF-16 or broke the block since the preflight. A failure, not a refusal.
            throw [InvalidOperationException]::new("$HostsPath changed while this script ran: $($_.Exception.Message)")
        } catch [System.IO.IOException] {
            if ($attempt -ge 5) {
                throw
            }
            Write-Verbose "hosts could not be written ($($_.Exception.Message)); trying again"
            Start-Sleep -Milliseconds (250 * $attempt)
        } finally {
            if (Test-Path -LiteralPath $temp) {
                [IO.File]::Delete($temp)
            }
        }
    }
}

function Get-OldHostsBackup {
    # This bundle's backups beside hosts past the newest $Keep (not another bundle's: py-2's).
    param([int]$Keep)
    $pattern = '^hosts\.gen-bundle-' + [regex]::Escape($BundleName) + '-[0-9]{8}-[0-9]{6}-[0-9]{3}\.bak$'
    return @(Get-ChildItem -LiteralPath $HostsFolder -Filter ('hosts.gen-bundle-' + $BundleName + '-*.bak') -File |
        Where-Object { $_.Name -cmatch $pattern -and -not ($_.Attributes -band [IO.FileAttributes]::ReparsePoint) } |
        Sort-Object Name -Descending | Select-Object -Skip $Keep)
}

function Remove-OldHostsBackup {
    # This bundle's backups beside hosts, past the newest $KeepHostsBackups: another tool that
    # rewrites hosts at every boot would otherwise add one backup per boot, forever.
    foreach ($file in @(Get-OldHostsBackup -Keep $KeepHostsBackups)) {
        Remove-Item -LiteralPath $file.FullName -Force -ErrorAction SilentlyContinue
    }
}

function Clear-NameCache {
    # Best effort: the hosts file is already written, and Windows reads it again on its own; a stopped
    # DNS Client service (Clear-DnsClientCache then fails) must not turn the run into a failure.
    try {
        if (Get-Command -Name Clear-DnsClientCache -ErrorAction SilentlyContinue) {
            Clear-DnsClientCache
        } else {
            $ErrorActionPreference = 'Continue'  # Windows PowerShell 5.1 turns a native command's stderr into an error
            & "$env:SystemRoot\System32\ipconfig.exe" /flushdns | Out-Null
        }
    } catch {
        Write-Warning "hosts: the name cache was not cleared ($($_.Exception.Message)); Windows reads the hosts file again by itself"
    }
}

# ---- task: the bundle's scheduled task ----

function Get-OurTask {
    # The bundle's task of that name in $TaskFolder: the logon task, or the broker's ($BrokerTaskName).
    param([string]$Name = $TaskName)
    return @(Get-ScheduledTask -TaskPath $TaskFolder -ErrorAction SilentlyContinue | Where-Object { $_.TaskName -eq $Name })
}

function Test-OurAuthor {
    # True when the scheduled task $Task names gen-bundle as its Author, compared
    # ordinally: a task of the bundle's name is the bundle's only then.
    param([object]$Task)
    return [string]::Equals([string]$Task.Author, $TaskAuthor, [StringComparison]::Ordinal)
}

function Test-BrokerRunning {
    # True when the broker's task is there and runs (its State Running, by name or number).
    $task = @(Get-OurTask -Name $BrokerTaskName)
    return $task.Count -gt 0 -and (Test-TaskValue -Value $task[0].State -Enum 'State' -Name 'Running')
}

# ---- task state: the task's enumerations, and a task an administrator disabled ----
# Get-ScheduledTask hands back the task's enumerations (State, RunLevel, MultipleInstances) by
# name or by number, depending on how PowerShell adapts the CIM value: each is compared in both
# forms. The numbers are Task Scheduler's (TASK_STATE, TASK_RUNLEVEL_TYPE, TASK_INSTANCES_POLICY,
# TASK_PROCESSTOKENSID_TYPE, https://learn.microsoft.com/windows/win32/taskschd/task-scheduler-enumerated-types).
$TaskEnums = @{
    State             = @{ Unknown = 0; Disabled = 1; Queued = 2; Ready = 3; Running = 4 }
    RunLevel          = @{ Limited = 0; Highest = 1 }
    MultipleInstances = @{ Parallel = 0; Queue = 1; IgnoreNew = 2; StopExisting = 3 }
    ProcessTokenSidType = @{ None = 0; Unrestricted = 1; Default = 2 }
}

function Test-TaskValue {
    # True when $Value, one of the task's enumerations, is $Name: written as the name or as its number.
    param([object]$Value, [string]$Enum, [string]$Name)
    $text = [string]$Value
    return [string]::Equals($text, $Name, [StringComparison]::OrdinalIgnoreCase) -or
        [string]::Equals($text, [string]$TaskEnums[$Enum][$Name], [StringComparison]::Ordinal)
}

function Test-TaskDisabledByAdmin {
    # gen-bundle's task, disabled, and not by a failed check ($ByCheck: the receipt's disabledByCheck
    # is there): an administrator's choice. install.ps1 then changes nothing and exits 0, and
    # detect.ps1 reports the bundle as installed, so that Intune or SCCM, which read the two
    # together, do not run install.ps1 again and again.
    param([object]$Task, [bool]$ByCheck)
    return -not $ByCheck -and (Test-OurAuthor -Task $Task) -and
        (Test-TaskValue -Value $Task.State -Enum 'State' -Name 'Disabled')
}

# ---- task match: is the registered task the one this bundle's task XML describes? ----

function ConvertTo-Sid {
    # An account as Task Scheduler may hand it back (DOMAIN\name, name, or a SID) as its SID;
    # '' when Windows cannot tell (a domain account with no domain controller in reach).
    param([string]$Account)
    if ($Account -cmatch '^S-1-[0-9-]+$') {
        return $Account
    }
    try {
        return (New-Object Security.Principal.NTAccount($Account)).Translate([Security.Principal.SecurityIdentifier]).Value
    } catch {
        return ''
    }
}

function Test-TaskShape {
    # True when $Task has what both of the bundle's tasks compare with $Wanted (its task XML):
    # gen-bundle's, enabled, one action (the same program, arguments and folder), the same
    # description, run level, instances policy and time limit, and one trigger, of the CIM class
    # $TriggerClass; each compared in every form Windows may hand it back in (an enumeration by name or
    # number). When not, install.ps1 registers the task again: a form it did not know would do that
    # at every boot.
    param([object]$Task, [xml]$Wanted, [string]$TriggerClass)
    $action = @($Task.Actions)[0]
    $trigger = @($Task.Triggers)
    $exec = $Wanted.Task.Actions.Exec
    return (Test-OurAuthor -Task $Task) -and
        -not (Test-TaskValue -Value $Task.State -Enum 'State' -Name 'Disabled') -and
        @($Task.Actions).Count -eq 1 -and $action.CimClass.CimClassName -eq 'MSFT_TaskExecAction' -and
        [string]::Equals([string]$Task.Description, $Wanted.Task.RegistrationInfo.Description, [StringComparison]::Ordinal) -and
        [string]::Equals([string]$action.Execute, $exec.Command, [StringComparison]::Ordinal) -and
        [string]::Equals([string]$action.Arguments, $exec.Arguments, [StringComparison]::Ordinal) -and
        [string]::Equals([string]$action.WorkingDirectory, $exec.WorkingDirectory, [StringComparison]::Ordinal) -and
        (Test-TaskValue -Value $Task.Principal.RunLevel -Enum 'RunLevel' -Name 'Limited') -and
        (Test-TaskValue -Value $Task.Settings.MultipleInstances -Enum 'MultipleInstances' -Name $Wanted.Task.Settings.MultipleInstancesPolicy) -and
        [string]::Equals([string]$Task.Settings.ExecutionTimeLimit, $Wanted.Task.Settings.ExecutionTimeLimit, [StringComparison]::Ordinal) -and
        $trigger.Count -eq 1 -and $trigger[0].CimClass.CimClassName -eq $TriggerClass
}

function Test-TaskCurrent {
    # True when the logon task $Task is registered as $Wanted (the bundle's task XML) says: its shape
    # (Test-TaskShape), at logon, and its principal, an account by name or SID.
    param([object]$Task, [xml]$Wanted)
    if (-not (Test-TaskShape -Task $Task -Wanted $Wanted -TriggerClass 'MSFT_TaskLogonTrigger')) {
        return $false
    }
    $principal = $Wanted.Task.Principals.Principal
    if ($BundleScope -eq 'machine') {
        $want = ConvertTo-Sid $principal.GroupId
        return $want -ne '' -and [string]::Equals((ConvertTo-Sid ([string]$Task.Principal.GroupId)), $want, [StringComparison]::Ordinal)
    }
    $have = [string]$Task.Principal.UserId
    foreach ($form in @($principal.UserId, ($principal.UserId -split '\\')[-1])) {
        if ([string]::Equals($have, $form, [StringComparison]::OrdinalIgnoreCase)) {
            return $true
        }
    }
    $want = ConvertTo-Sid $principal.UserId
    return $want -ne '' -and [string]::Equals((ConvertTo-Sid $have), $want, [StringComparison]::Ordinal)
}

function Test-BrokerTaskCurrent {
    # True when the broker's task $Task is registered as $Wanted (its task XML) says: its shape
    # (Test-TaskShape), at boot, as LOCAL SERVICE (S-1-5-19, which Task Scheduler may hand back as
    # 'LOCAL SERVICE' or 'NT AUTHORITY\LOCAL SERVICE', in the system's language), with its own task SID
    # (ProcessTokenSidType) and no privilege but those the XML requires. MSFT_TaskPrincipal2, which
    # Get-ScheduledTask hands back, has ProcessTokenSidType and RequiredPrivilege.
    param([object]$Task, [xml]$Wanted)
    $principal = $Wanted.Task.Principals.Principal
    return (Test-TaskShape -Task $Task -Wanted $Wanted -TriggerClass 'MSFT_TaskBootTrigger') -and
        [string]::Equals((ConvertTo-Sid ([string]$Task.Principal.UserId)), (ConvertTo-Sid $principal.UserId), [StringComparison]::Ordinal) -and
        (Test-TaskValue -Value $Task.Principal.ProcessTokenSidType -Enum 'ProcessTokenSidType' -Name $principal.ProcessTokenSidType) -and
        [string]::Equals((@($Task.Principal.RequiredPrivilege) -join ','), (@($principal.RequiredPrivileges.Privilege) -join ','), [StringComparison]::OrdinalIgnoreCase)
}

# ---- processes: the launchers and servers of this bundle, found by their command lines ----

function Test-ServerCommandLine {
    # True for the command line of this bundle's notebook server, as the launcher builds it: with
    # the settings in the install folder; or, from an earlier version's launcher, with the bundle's
    # address and port (which a server of this version no longer listens on).
    param([string]$CommandLine)
    $line = $CommandLine + ' '
    if (-not $line.Contains(' -m notebook ')) {
        return $false
    }
    return $line.IndexOf('--config=' + (Join-Path $InstallDir $ConfigFile), [StringComparison]::OrdinalIgnoreCase) -ge 0 -or
        ($line.Contains(" --ServerApp.ip=$BundleIp ") -and $line.Contains(" --ServerApp.port=$BundlePort "))
}

function Test-BrokerCommandLine {
    # True for a process of this bundle's broker: its task's python.exe, the worker it starts, and
    # (--env) the base python.exe each one's Scripts\python.exe runs: each names the installed broker.
    param([string]$CommandLine)
    return $CommandLine.IndexOf((Join-Path $InstallDir $BrokerFile), [StringComparison]::OrdinalIgnoreCase) -ge 0
}

function Test-OurBroker {
    # True when process $ProcessId is this bundle's broker: python.exe with the broker's command line,
    # running as LOCAL SERVICE (S-1-5-19). A user can start python.exe with any command line, but not
    # as LOCAL SERVICE.
    param([uint32]$ProcessId)
    $process = Get-CimInstance -ClassName Win32_Process -Filter "ProcessId = $ProcessId" -ErrorAction SilentlyContinue
    if (-not $process -or $process.Name -ne 'python.exe') {
        return $false
    }
    if ($null -eq $process.CommandLine) {
        return Test-LoggedBroker $process
    }
    if (-not (Test-BrokerCommandLine ([string]$process.CommandLine))) {
        return $false
    }
    # -WhatIf:$false: Invoke-CimMethod honours -WhatIf, and under it would call nothing.
    $owner = Invoke-CimMethod -InputObject $process -MethodName GetOwnerSid -ErrorAction SilentlyContinue -WhatIf:$false
    return $null -ne $owner -and $owner.ReturnValue -eq 0 -and $owner.Sid -eq 'S-1-5-19'
}

function Test-LoggedBroker {
    # The task SID's default DACL may keep an administrator (SYSTEM is in it) from reading the broker's
    # process, its command line included. Then its own log, which only administrators and the broker's
    # task write, names the supervisor, which made the listening socket: True when $Process is the one
    # its last event 100 names, and was started before that event (not a later process given its id).
    param([object]$Process)
    $started = @(Get-BrokerLogLine | Where-Object { $_.Contains('"event": 100,') } | Select-Object -Last 1)
    if ($started.Count -eq 0) {
        return $false
    }
    try {
        $record = $started[0] | ConvertFrom-Json
        $loggedAt = Get-ReceiptValue $record 'utc'
        $format = 'yyyy-MM-ddTHH:mm:ssZ'
        $styles = [Globalization.DateTimeStyles]'AssumeUniversal, AdjustToUniversal'
        if ($null -eq $loggedAt) {  # a broker of 0.3.10 or earlier logs its local time only
            $loggedAt = Get-ReceiptValue $record 'time'
            $format = 'yyyy-MM-ddTHH:mm:ss'
            $styles = [Globalization.DateTimeStyles]'AssumeLocal, AdjustToUniversal'
        }
        if ($loggedAt -is [datetime]) {  # PowerShell 7's ConvertFrom-Json makes a date of it, 5.1's does not
            $loggedAt = $loggedAt.ToUniversalTime()
        } else {
            $loggedAt = [datetime]::ParseExact([string]$loggedAt, $format, [Globalization.CultureInfo]::InvariantCulture, $styles)
        }
    } catch {
        return $false
    }
    return [string](Get-ReceiptValue $record 'pid') -eq [string]$Process.ProcessId -and $null -ne $Process.CreationDate -and $Process.CreationDate.ToUniversalTime() -le $loggedAt.AddSeconds(1)
}

function Test-LauncherProcess {
    # True for a process of this bundle's launcher: conhost.exe and cmd.exe running the installed
    # .bat (the task names it relative to the install folder, its command line ending in
    # ' /c .\<launcher>'; an earlier version named it by its full path), and python.exe running the
    # launcher's script, which the .bat names by its full path.
    param([object]$Process)
    $line = ([string]$Process.CommandLine).TrimEnd()
    if ($Process.Name -eq 'python.exe') {
        return $line.IndexOf((Join-Path $InstallDir $LauncherScriptFile), [StringComparison]::OrdinalIgnoreCase) -ge 0
    }
    return @('cmd.exe', 'conhost.exe') -contains $Process.Name -and (
        $line.EndsWith(' /c .\' + $LauncherFile, [StringComparison]::OrdinalIgnoreCase) -or
        $line.IndexOf((Join-Path $InstallDir $LauncherFile), [StringComparison]::OrdinalIgnoreCase) -ge 0)
}

function Get-BundleProcess {
    # The launchers (conhost.exe and cmd.exe running the installed .bat, python.exe running its
    # script) first, so that none starts a new server, then the servers; never the broker's
    # processes, which -Broker lists alone (its task stops it: install.ps1 stops it only to replace
    # its file). The programs a launcher of 0.3.13 or earlier runs (ping.exe while it waits, find.exe)
    # inherit its lock on launcher.lock: they are stopped with it, or a new launcher would wait for them.
    param([switch]$Broker)
    $every = @(Get-CimInstance -ClassName Win32_Process)
    $all = @($every | Where-Object { $null -ne $_.CommandLine })
    if ($Broker) {
        $found = @($all | Where-Object { Test-BrokerCommandLine $_.CommandLine })
        # A broker whose command line Windows does not show (Test-LoggedBroker): the supervisor its
        # log names, and the python.exe processes it started since, and theirs (the worker; with
        # --env, the base python.exe each Scripts\python.exe runs).
        $hidden = @($every | Where-Object { $null -eq $_.CommandLine -and $_.Name -eq 'python.exe' })
        $generation = @($hidden | Where-Object { Test-LoggedBroker $_ })
        $born = @{}  # each process taken, by id: its creation time
        while ($generation.Count -gt 0) {
            $found += $generation
            foreach ($process in $generation) {
                $born[[int]$process.ProcessId] = $process.CreationDate
            }
            $generation = @($hidden | Where-Object {
                -not $born.ContainsKey([int]$_.ProcessId) -and $born.ContainsKey([int]$_.ParentProcessId) -and
                    $_.CreationDate -ge $born[[int]$_.ParentProcessId]
            })
        }
        return @($found)
    }
    $all = @($all | Where-Object { -not (Test-BrokerCommandLine $_.CommandLine) })
    $launchers = @($all | Where-Object { Test-LauncherProcess $_ })
    $servers = @($all | Where-Object { $_.Name -eq 'python.exe' -and (Test-ServerCommandLine $_.CommandLine) })
    # With the bundle's own environment: every program that runs from the install folder (its
    # Scripts\python.exe, the launcher of a server or of a kernel) and the python.exe each one starts.
    $fromInstall = @($all | Where-Object {
        $null -ne $_.ExecutablePath -and $_.ExecutablePath.StartsWith($InstallDir + '\', [StringComparison]::OrdinalIgnoreCase)
    })
    $fromInstallStart = @{}
    foreach ($process in $fromInstall) {
        $fromInstallStart[[int]$process.ProcessId] = $process.CreationDate
    }
    $started = @($all | Where-Object {
        $_.Name -eq 'python.exe' -and $fromInstallStart.ContainsKey([int]$_.ParentProcessId) -and
            $_.CreationDate -ge $fromInstallStart[[int]$_.ParentProcessId]
    })
    $servers = @(@($servers) + $fromInstall + $started | Sort-Object -Property ProcessId -Unique)
    # A process's parent id may belong to a process that ended long ago and whose id a
    # launcher now has: a child counts only when it is younger than the launcher, and
    # only the programs a launcher runs are stopped.
    $launcherStart = @{}
    foreach ($launcher in $launchers) {
        $launcherStart[[int]$launcher.ProcessId] = $launcher.CreationDate
    }
    $children = @($all | Where-Object {
        $launcherStart.ContainsKey([int]$_.ParentProcessId) -and $_.CreationDate -ge $launcherStart[[int]$_.ParentProcessId] -and
            @('ping.exe', 'find.exe') -contains $_.Name
    })
    # With --env, a launcher's python.exe also runs from the install folder: listed once, as a launcher.
    $servers = @($servers | Where-Object { -not $launcherStart.ContainsKey([int]$_.ProcessId) })
    return @($launchers + $children + $servers)
}

function Get-ProcessOwner {
    # DOMAIN\name of the account a process runs as, or '?' when Windows does not say.
    param([object]$Process)
    $owner = Invoke-CimMethod -InputObject $Process -MethodName GetOwner -ErrorAction SilentlyContinue -WhatIf:$false
    if ($owner -and $owner.ReturnValue -eq 0) {
        return "$($owner.Domain)\$($owner.User)"
    }
    return '?'
}

function Stop-BundleProcess {
    # Each process (named, with its id and account, in the question asked first) is stopped only
    # while its id still belongs to the process that was listed (same creation time): an id that
    # was freed and given to another program is left alone.
    param([object[]]$Process, [string]$Reason)
    if ($Process.Count -eq 0) {
        Write-Output "process: none is running ($Reason)"
        return
    }
    $list = @($Process | ForEach-Object { "$($_.Name) $($_.ProcessId) ($(Get-ProcessOwner $_))" }) -join ', '
    if (Confirm-Change -Kind 'process-stop' -Target "$($Process.Count) processes of the bundle" -Action "Stop $list, $Reason" -Undo 'none needed: their task starts them again (the logon task at the next logon, the broker''s at boot or install.ps1)') {
        foreach ($process in $Process) {
            $now = Get-CimInstance -ClassName Win32_Process -Filter "ProcessId = $([int]$process.ProcessId)" -ErrorAction SilentlyContinue
            if ($null -eq $now -or $now.CreationDate -ne $process.CreationDate) {
                Write-Output "process: $($process.Name) (process $($process.ProcessId)) has already ended"
                continue
            }
            Stop-Process -Id $process.ProcessId -Force -ErrorAction SilentlyContinue
            Wait-Process -Id $process.ProcessId -Timeout 10 -ErrorAction SilentlyContinue
            if (Get-Process -Id $process.ProcessId -ErrorAction SilentlyContinue) {
                Write-Warning "could not stop $($process.Name) (process $($process.ProcessId))"
            } else {
                Write-Output "process: stopped $($process.Name) (process $($process.ProcessId))"
            }
        }
    }
}

# ---- start menu: the entry for all users ----

function Get-Shortcut {
    # The Start-menu entry's current settings (WScript.Shell reads an existing .lnk), or $null.
    if (-not (Test-Path -LiteralPath $ShortcutPath -PathType Leaf)) {
        return $null
    }
    return (New-Object -ComObject WScript.Shell).CreateShortcut($ShortcutPath)
}

# ---- admin-only folders: who else may write, and creating one no user can change ----
# The state folders are under %ProgramFiles% (the preflight checks that no user can write
# there), and %ProgramData%\jupyter under %ProgramData%, where users may create folders and
# own what they create. SYSTEM writes only into a folder that it created with its ACL set at
# creation, or that is a real folder (no link) owned by SYSTEM or Administrators which
# nobody else may change.

$AdminSids = @('S-1-5-18', 'S-1-5-32-544')  # SYSTEM, Administrators
$TrustedInstallerSid = 'S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464'

function Get-PathSecurity {
    # The owner and the DACL of $Path, read by .NET: Get-Acl also turns every SID into a name (a
    # call to LSA each), and the Python tree's walk reads some thousands of them at every boot.
    param([string]$Path)
    $sections = [Security.AccessControl.AccessControlSections]'Access, Owner'
    if ($PSVersionTable.PSEdition -eq 'Core') {
        if ([IO.Directory]::Exists($Path)) {
            return [IO.FileSystemAclExtensions]::GetAccessControl((New-Object IO.DirectoryInfo($Path)), $sections)  # .NET 5 and later
        }
        return [IO.FileSystemAclExtensions]::GetAccessControl((New-Object IO.FileInfo($Path)), $sections)
    }
    if ([IO.Directory]::Exists($Path)) {
        return [IO.Directory]::GetAccessControl($Path, $sections)  # .NET Framework
    }
    return [IO.File]::GetAccessControl($Path, $sections)
}

function Get-NonAdminWriter {
    # Accounts other than SYSTEM, Administrators, TrustedInstaller and CREATOR OWNER (and the SID
    # $Trusted names) that may write to $Path: what runs from there must not be theirs to change.
    # Its owner too, unless $Owners holds it (by default SYSTEM, Administrators, TrustedInstaller): an owner may always change the ACL (WRITE_DAC), so
    # an owner outside the trusted accounts can grant itself any right. An administrator's own
    # account counts as such an owner too: whether an account is an administrator can change.
    # -AnyOwner: owners are not judged (what install.ps1 itself made below a folder of its own).
    param([string]$Path, [string]$Trusted, [switch]$AnyOwner, [string[]]$Owners)
    if (-not $Owners) {
        $Owners = $AdminSids + $TrustedInstallerSid
    }
    $allowed = $AdminSids + @($TrustedInstallerSid, 'S-1-3-0', $Trusted)  # S-1-3-0: CREATOR OWNER
    $write = [int64][System.Security.AccessControl.FileSystemRights]'WriteData, AppendData, WriteExtendedAttributes, WriteAttributes, Delete, DeleteSubdirectoriesAndFiles, ChangePermissions, TakeOwnership'
    $genericWrite = [int64]0x50000000  # GENERIC_ALL, GENERIC_WRITE
    $security = Get-PathSecurity $Path
    $found = New-Object System.Collections.Generic.List[string]
    if (-not $AnyOwner) {
        $owner = $security.GetOwner([Security.Principal.SecurityIdentifier])
        if ($null -eq $owner) {
            $found.Add('an owner that could not be read')
        } elseif ($Owners -notcontains $owner.Value) {
            $found.Add((Get-AccountName $owner) + ' as its owner')
        }
    }
    foreach ($rule in $security.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
        $rights = [int64]$rule.FileSystemRights
        if ($rule.AccessControlType -ne 'Allow' -or (($rights -band $write) -eq 0 -and ($rights -band $genericWrite) -eq 0)) {
            continue
        }
        if ($allowed -notcontains $rule.IdentityReference.Value) {
            $found.Add((Get-AccountName $rule.IdentityReference))
        }
    }
    return $found.ToArray()
}

function Get-AccountName {
    # 'SID (DOMAIN\name)', or the SID alone when Windows cannot name it.
    param([Security.Principal.SecurityIdentifier]$Sid)
    try {
        return $Sid.Value + ' (' + $Sid.Translate([Security.Principal.NTAccount]).Value + ')'
    } catch {
        return $Sid.Value
    }
}

function New-AdminOnlyFolder {
    # Creates $Path with New-AdminOnlySecurity set at creation: CreateDirectory with a
    # DirectorySecurity leaves no moment in which the folder has the inherited ACL. It does
    # nothing to a folder that is already there: callers check the result (Get-AdminOnlyProblem).
    # It creates that one level only: given a DirectorySecurity, CreateDirectory also creates
    # every missing parent, each with this same ACL (Microsoft's API page), so a missing parent
    # is an error here and callers create each level themselves, each with its own ACL.
    param([string]$Path, [switch]$UsersRead, [string]$Writer = '')
    if (-not (Test-Path -LiteralPath (Split-Path -Parent $Path) -PathType Container)) {
        throw "$(Split-Path -Parent $Path) is missing: it is created first, with its own ACL, before $Path"
    }
    $security = New-AdminOnlySecurity -UsersRead:$UsersRead -Writer $Writer
    if ($PSVersionTable.PSEdition -eq 'Core') {
        [void][IO.FileSystemAclExtensions]::CreateDirectory($security, $Path)  # .NET 5 and later
    } else {
        [void][IO.Directory]::CreateDirectory($Path, $security)  # .NET Framework
    }
}

function New-AdminOnlySecurity {
    # Owner Administrators; SYSTEM and administrators write; nothing inherited from the
    # parent. -UsersRead: users may read too (Jupyter reads %ProgramData%\jupyter as each
    # user). The state folders are for administrators only: their logs quote users' logs. -Writer: one
    # more SID may modify what is in it (the broker's task SID, in the broker's log folder).
    param([switch]$UsersRead, [string]$Writer = '')
    $security = New-Object System.Security.AccessControl.DirectorySecurity
    $security.SetOwner((New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-544')))
    $security.SetAccessRuleProtection($true, $false)
    $grants = @(@('S-1-5-18', 'FullControl'), @('S-1-5-32-544', 'FullControl'))
    if ($UsersRead) {
        $grants += ,@('S-1-5-32-545', 'ReadAndExecute')
    }
    if ($Writer) {
        # The files the writer makes are owned by its token's user (LOCAL SERVICE for the broker's task),
        # which an owner's implicit rights would let every process of that account re-ACL: OWNER RIGHTS
        # (S-1-3-4) replaces them with reading attributes only.
        $grants += ,@($Writer, 'Modify')
        $grants += ,@('S-1-3-4', 'ReadAttributes')
    }
    foreach ($grant in $grants) {
        $identity = New-Object System.Security.Principal.SecurityIdentifier($grant[0])
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($identity, $grant[1], 'ContainerInherit, ObjectInherit', 'None', 'Allow')
        $security.AddAccessRule($rule)
    }
    return $security
}

function Test-Entry {
    # True when $Path names anything, a link whose target is gone included: GetAttributes
    # reads the last component itself, it does not follow it. Access denied (below an admin-only
    # folder, in a run that is not elevated: -WhatIf) is not "missing": something may be there,
    # and the checks that read it next say what they cannot see.
    param([string]$Path)
    try {
        [void][IO.File]::GetAttributes($Path)
        return $true
    } catch [IO.FileNotFoundException] {
        return $false
    } catch [IO.DirectoryNotFoundException] {
        return $false
    } catch [UnauthorizedAccessException] {
        return $true
    }
}

function Get-UserMadeReason {
    # Why $Path, which is there, is not administrators' to build on - a link, or an owner other
    # than SYSTEM or Administrators - or nothing. Under %ProgramData% that is what a user made.
    param([string]$Path)
    if ([IO.File]::GetAttributes($Path) -band [IO.FileAttributes]::ReparsePoint) {
        return 'a link (junction or symbolic link)'
    }
    try {
        $owner = (Get-PathSecurity $Path).GetOwner([Security.Principal.SecurityIdentifier])
    } catch [UnauthorizedAccessException] {
        return 'one whose owner administrators may not read'  # its owner shut them out: not theirs
    }
    if ($AdminSids -contains $owner.Value) {
        return $null
    }
    return "owned by $(Get-AccountName $owner)"
}

function Get-AdminOnlyProblem {
    # Why SYSTEM must not write through the folder $Path, or nothing. -Writer: the one SID besides
    # administrators that may change what is in it (New-AdminOnlySecurity -Writer).
    param([string]$Path, [string]$Writer = '')
    $attributes = [IO.File]::GetAttributes($Path)
    if ($attributes -band [IO.FileAttributes]::ReparsePoint) {
        return "$Path is a link (junction or symbolic link)"
    }
    if (-not ($attributes -band [IO.FileAttributes]::Directory)) {
        return "$Path is a file, not a folder"
    }
    $writers = @(Get-NonAdminWriter -Path $Path -Trusted $Writer -Owners $AdminSids)
    if ($writers.Count -gt 0) {
        return "$Path can be changed by $($writers -join ', ')"
    }
    return $null
}

# ---- state folders: $StateRoot, the bundle's folder there, and its logs (administrators only) ----

function Get-StateFolderProblem {
    # Each level that is there and that SYSTEM must not write through (admin-only.ps1).
    foreach ($folder in @($StateRoot, $StateDir, $StateLogDir)) {
        if (Test-Entry $folder) {
            try {
                $problem = Get-AdminOnlyProblem $folder
            } catch [UnauthorizedAccessException] {
                if ($elevated) {
                    throw
                }
                # Not elevated (-WhatIf, which only looks): an admin-only folder cannot be read.
                Write-Warning "state: $folder can be read by administrators only; run elevated to have it checked"
                continue
            }
            if ($problem) {
                "$problem, and gen-bundle writes its receipt and logs there as SYSTEM: a user could make it write or delete elsewhere. Look at what is in it, then remove it"
            }
        }
    }
}

function New-StateFolder {
    # Creates each missing level, one at a time, each with its own ACL from its creation:
    # $InstallRoot lets users read and run what is below it (the launcher is in $InstallDir,
    # which inherits that), the state folders are for administrators only. Then it checks the
    # state levels again: a folder that a user made first, in the meantime, is theirs, and is
    # refused. ($InstallRoot, which an administrator may have made, passed the preflight's check
    # of who may write there.)
    foreach ($level in @(@($InstallRoot, $true), @($StateRoot, $false), @($StateDir, $false), @($StateLogDir, $false))) {
        if (-not (Test-Entry $level[0])) {
            New-AdminOnlyFolder -Path $level[0] -UsersRead:$level[1]
        }
    }
    foreach ($folder in @($StateRoot, $StateDir, $StateLogDir)) {
        $problem = Get-AdminOnlyProblem $folder
        if ($problem) {
            throw "$problem; nothing was written there"
        }
    }
}

# ---- run log: a transcript of each run in $StateLogDir, the newest $KeepLogs of each script kept ----

function Get-OldRunLog {
    # The logs of this script's earlier runs that the next one pushes past the newest $KeepLogs
    # (none when the folder is not there, or cannot be read without elevation).
    param([string]$Script)
    try {
        return @(Get-ChildItem -LiteralPath $StateLogDir -Filter "$Script-*.log" -ErrorAction Stop |
            Sort-Object Name -Descending | Select-Object -Skip ($KeepLogs - 1))
    } catch {
        return @()
    }
}

function Start-BundleLog {
    # The log of this run, in the state folder (after New-StateFolder: only SYSTEM and
    # administrators can have put files there), the older ones past the newest $KeepLogs deleted.
    # Sets $Run.Transcript once the transcript runs: Stop-BundleRun stops it.
    param([string]$Script)
    $old = @(Get-OldRunLog -Script $Script)
    $action = 'Write the log of this run there'
    if ($old.Count -gt 0) {
        $action += ", and delete the older logs past the newest ${KeepLogs}: $(@($old | ForEach-Object { $_.Name }) -join ', ')"
    }
    # install.ps1 -WhatIf on a PC where the folder is not there yet shows the log too: a real run
    # makes the folder and writes it (uninstall.ps1 makes no folder).
    if (((Test-Entry $StateLogDir) -or ($WhatIfPreference -and $Script -eq 'install')) -and (Confirm-Change -Kind 'log' -Target $StateLogDir -Action $action -Undo 'stays: the logs of the runs, for the record')) {
        $old | Remove-Item -Force -ErrorAction SilentlyContinue
        try {
            Start-Transcript -LiteralPath (Join-Path $StateLogDir ($Script + '-' + (Get-Date -Format 'yyyyMMdd-HHmmss') + '.log')) -Append | Out-Null
            $Run.Transcript = $true
        } catch {
            Write-Warning "log: this run writes no log ($($_.Exception.Message))"  # a full disk must not fail the run
        }
    }
}

# ---- receipt: what install.ps1 did on this machine, read back by install.ps1 and uninstall.ps1 ----

function Read-Receipt {
    # The receipt in $StateDir (administrators only; the callers check that first), or $null when
    # it is missing or unreadable. It is UTF-8 without a BOM, which Windows PowerShell 5.1 would
    # read as ANSI unless told.
    if (-not (Test-Path -LiteralPath $ReceiptPath -PathType Leaf)) {
        return $null
    }
    try {
        return [IO.File]::ReadAllText($ReceiptPath, [Text.Encoding]::UTF8) | ConvertFrom-Json
    } catch {
        return $null
    }
}

function Write-ReceiptFile {
    # The receipt, as JSON (UTF-8 without a BOM), written beside it and swapped in: a run that ends
    # half-way leaves the old receipt or the new one, never one cut short, which would read as
    # none - and a receipt's mark (disabledByCheck) is what tells the tool's disable from an
    # administrator's.
    param([object]$Receipt)
    $bytes = (New-Object Text.UTF8Encoding($false)).GetBytes(($Receipt | ConvertTo-Json -Depth 4))
    Write-SwappedFile -Path $ReceiptPath -Bytes $bytes
}

function Write-SwappedFile {
    # $Bytes written beside $Path (.new) and swapped in: whoever reads $Path (a new broker worker,
    # the next run) finds the old file or the new one, never one cut short. The file keeps its ACL.
    param([string]$Path, [byte[]]$Bytes)
    $temp = $Path + '.new'
    [IO.File]::WriteAllBytes($temp, $Bytes)
    if (Test-Path -LiteralPath $Path -PathType Leaf) {
        # A backup name, not $null: PowerShell would hand File.Replace "" for it, which it refuses.
        [IO.File]::Delete($Path + '.old')
        [IO.File]::Replace($temp, $Path, $Path + '.old')
        [IO.File]::Delete($Path + '.old')
    } else {
        [IO.File]::Move($temp, $Path)
    }
}

function Get-ReceiptValue {
    # One value of the receipt (or of a line of the broker's log), or $null when it or that value is
    # missing (an older receipt has fewer): under Set-StrictMode a missing property would throw.
    param([object]$Receipt, [string]$Name)
    if ($null -eq $Receipt -or $null -eq $Receipt.PSObject.Properties[$Name]) {
        return $null
    }
    return $Receipt.$Name
}

# ---- preflight: what stands in the way, found before any change ----

function Get-HostsMapping {
    # Lines outside our block that map our name: exact names, never substrings.
    param([string]$Text)
    $rest = Set-HostsBlock -Text $Text -Block @()
    foreach ($line in ($rest -split "`r?`n")) {
        $data = ($line -split '#', 2)[0].Trim()
        if ($data.Length -eq 0) {
            continue
        }
        $fields = @($data -split '\s+')
        for ($i = 1; $i -lt $fields.Count; $i++) {
            if ([string]::Equals($fields[$i], $BundleName, [StringComparison]::OrdinalIgnoreCase)) {
                [pscustomobject]@{ Address = $fields[0]; Line = $line }
                break
            }
        }
    }
}

function Get-PortProblem {
    # Why the broker could not hold $BundleIp:$BundlePort, if anything but this bundle's broker holds it.
    $listeners = @(Get-NetTCPConnection -State Listen -LocalPort $BundlePort -ErrorAction SilentlyContinue |
        Where-Object { @($BundleIp, '0.0.0.0', '::', "::ffff:$BundleIp") -contains $_.LocalAddress })
    # While this bundle's broker holds the address itself, another listener on 0.0.0.0 or [::] (which
    # Windows lets any account make beside it) takes none of its connections: a warning, not a
    # refusal any user could cause at every run. It matters at the broker's next start (event 101),
    # and so it stays a refusal when this run would stop the broker: to extract again a damaged
    # environment it runs from (one of a new lock is a new folder, and stops nothing).
    $repair = $EnvFolder -and -not $Run.InPlace -and (Test-Entry (Join-Path $InstallDir $EnvFolder))
    $held = -not $repair -and @($listeners | Where-Object { $_.LocalAddress -eq $BundleIp -and (Test-OurBroker -ProcessId $_.OwningProcess) }).Count -gt 0
    foreach ($listener in $listeners) {
        $owner = Get-CimInstance -ClassName Win32_Process -Filter "ProcessId = $($listener.OwningProcess)" -ErrorAction SilentlyContinue
        if (-not $owner -and (Test-BrokerRunning)) {
            continue  # a listener whose process has ended, while the broker's task runs: the supervisor's row (its worker lives on)
        }
        if (Test-OurBroker -ProcessId $listener.OwningProcess) {
            continue  # this bundle's broker: python.exe running its file as LOCAL SERVICE
        }
        if ($owner -and $owner.Name -eq 'python.exe' -and (Test-ServerCommandLine ([string]$owner.CommandLine))) {
            continue  # a server of an earlier version's launcher, stopped when its files are replaced; were it a
            # user's look-alike, the broker could not bind, and the probe would find no broker (exit 5)
        }
        if ($owner -and $owner.Name -eq 'python.exe' -and $null -eq $owner.CommandLine -and -not $elevated) {
            Write-Warning "python.exe (process $($listener.OwningProcess)) listens on $($listener.LocalAddress):$BundlePort; not elevated, so it cannot be told from this bundle's broker"
            continue
        }
        if ($listener.OwningProcess -eq 4) {
            $problem = "HTTP.sys (the System process) listens on $($listener.LocalAddress):$BundlePort for IIS or another HTTP.sys listener (one with an empty IP listen list takes every address); see: netsh http show servicestate"
        } elseif ($owner) {
            $problem = "$($owner.Name) (process $($listener.OwningProcess)) listens on $($listener.LocalAddress):$BundlePort"
        } else {
            $problem = "process $($listener.OwningProcess) listens on $($listener.LocalAddress):$BundlePort"
        }
        if ($held -and @('0.0.0.0', '::') -contains $listener.LocalAddress) {
            Write-Warning "$problem, beside this bundle's broker, which holds ${BundleIp}:${BundlePort}: at the broker's next start it could keep the address from it (event 101 in $BrokerLog)"
        } else {
            $problem
        }
    }
    $ErrorActionPreference = 'Continue'  # Windows PowerShell 5.1 turns a native command's stderr into an error
    $ranges = @(& "$env:SystemRoot\System32\netsh.exe" int ipv4 show excludedportrange protocol=tcp 2>$null)
    $ErrorActionPreference = 'Stop'
    foreach ($line in $ranges) {
        if ($line -match '^\s*(\d+)\s+(\d+)') {
            if ($BundlePort -ge [int]$Matches[1] -and $BundlePort -le [int]$Matches[2]) {
                "port $BundlePort is in an excluded port range ($($Matches[1])-$($Matches[2]), often reserved by Hyper-V or WSL); see: netsh int ipv4 show excludedportrange protocol=tcp"
            }
        }
    }
    if ($BundlePort -eq 80) {
        # Windows reserves this URL for Everyone: any account may have HTTP.sys listen on port 80 of every
        # address through it, and one that does so before the broker starts keeps the address from it.
        # netsh prints the URL only when the reservation is there, in every language.
        $url = 'http://+:80/Temporary_Listen_Addresses/'
        $ErrorActionPreference = 'Continue'
        $reservation = @(& "$env:SystemRoot\System32\netsh.exe" http show urlacl "url=$url" 2>$null) -join "`n"
        $ErrorActionPreference = 'Stop'
        if ($reservation.IndexOf($url, [StringComparison]::OrdinalIgnoreCase) -ge 0) {
            Write-Warning "HTTP.sys reserves $url for every account (Windows' default): any user can make HTTP.sys listen on port 80, and before the broker starts at boot that would keep ${BundleIp}:80 from it (event 101 in $BrokerLog). Unless a program here needs it, IT removes it: netsh http delete urlacl url=$url"
        }
    }
}

function Get-BrokerLogProblem {
    # The broker's log folder, when it is there: a real folder that only administrators and SYSTEM
    # own and change, but for the broker's task SID, which must be able to write its log there.
    try {
        if (-not (Test-Entry $BrokerLogDir)) {
            return
        }
        $problem = Get-AdminOnlyProblem -Path $BrokerLogDir -Writer $BrokerTaskSid
        $modify = [int64][System.Security.AccessControl.FileSystemRights]'Modify'
        $granted = @((Get-Acl -LiteralPath $BrokerLogDir).GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier]) | Where-Object {
            $_.IdentityReference.Value -eq $BrokerTaskSid -and $_.AccessControlType -eq 'Allow' -and ([int64]$_.FileSystemRights -band $modify) -eq $modify
        }).Count -gt 0
    } catch [UnauthorizedAccessException] {
        if ($elevated) {
            throw
        }
        Write-Warning "broker: $BrokerLogDir can be read by administrators only; run elevated to have it checked"
        return
    }
    if ($problem) {
        "$problem, and the broker and install.ps1 read and write there: look at what is in it, then remove it"
    } elseif (-not $granted) {
        "$BrokerLogDir does not let the broker's task ($BrokerTaskSid) write its log: icacls `"$BrokerLogDir`" /grant *${BrokerTaskSid}:(OI)(CI)M, or remove the folder"
    }
}

function Test-UsersRead {
    # True when BUILTIN\Users (or Authenticated Users, Everyone, INTERACTIVE) may list $Path and
    # read and run what is in it, and none of them is denied that: the logon task and the
    # Start-menu entry run the launcher below $InstallRoot as each user.
    param([string]$Path)
    $readers = @('S-1-5-32-545', 'S-1-5-11', 'S-1-1-0', 'S-1-5-4')
    $need = [int64][System.Security.AccessControl.FileSystemRights]'ReadAndExecute'
    $allowed = $false
    foreach ($rule in (Get-Acl -LiteralPath $Path).GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
        $rights = [int64]$rule.FileSystemRights
        if (($rights -band 0x10000000) -ne 0 -or ($rights -band 0xA0000000) -eq 0xA0000000) {
            $rights = $rights -bor $need  # GENERIC_ALL, or GENERIC_READ with GENERIC_EXECUTE
        }
        if ($readers -notcontains $rule.IdentityReference.Value -or ($rule.PropagationFlags -band [System.Security.AccessControl.PropagationFlags]::InheritOnly)) {
            continue
        }
        if ($rule.AccessControlType -eq 'Deny' -and ($rights -band $need) -ne 0) {
            return $false
        }
        if ($rule.AccessControlType -eq 'Allow' -and ($rights -band $need) -eq $need) {
            $allowed = $true
        }
    }
    return $allowed
}

function Get-JupyterCoreVersion {
    # The version of jupyter_core installed for $PythonExe (a base install, or a virtual
    # environment's Scripts\python.exe), read from its dist-info METADATA: no Python runs.
    $pythonFolder = Split-Path -Parent $PythonExe
    foreach ($sitePackages in @((Join-Path $pythonFolder 'Lib\site-packages'), (Join-Path (Split-Path -Parent $pythonFolder) 'Lib\site-packages'))) {
        if (-not (Test-Path -LiteralPath $sitePackages -PathType Container)) {
            continue
        }
        foreach ($info in @(Get-ChildItem -LiteralPath $sitePackages -Directory -Filter 'jupyter_core-*.dist-info')) {
            $metadata = Join-Path $info.FullName 'METADATA'
            if (-not (Test-Path -LiteralPath $metadata -PathType Leaf)) {
                continue
            }
            foreach ($line in [IO.File]::ReadAllLines($metadata)) {
                if ($line.Length -eq 0) {
                    break  # the headers end here
                }
                if ($line -cmatch '^Version:\s*(\S+)') {
                    return $Matches[1]
                }
            }
        }
    }
    return $null
}

function Test-VersionBelow {
    # True when $Version (its leading numbers: 5.8.0rc1 reads as 5.8.0) is below $Minimum.
    param([string]$Version, [string]$Minimum)
    $have = @(([regex]::Match($Version, '^[0-9]+(\.[0-9]+)*').Value -split '\.') | ForEach-Object { [int]('0' + $_) })
    $need = @($Minimum -split '\.' | ForEach-Object { [int]$_ })
    for ($i = 0; $i -lt $need.Count; $i++) {
        $part = 0
        if ($i -lt $have.Count) {
            $part = $have[$i]
        }
        if ($part -ne $need[$i]) {
            return $part -lt $need[$i]
        }
    }
    return $false
}

function Get-PythonTreeProblem {
    # What every user's server runs and imports, checked at each run: python.exe's folder
    # (or, for a virtual environment's Scripts\python.exe, the environment's, and the base
    # Python its pyvenv.cfg names), every folder below their Lib, DLLs and Scripts and below
    # share and etc (where Jupyter finds kernels and settings), the programs and DLLs beside
    # python.exe, and every .pth and ._pth file (each line of one can run code at start). Files take their
    # folder's rights, unless an administrator set others: only folders are walked, not
    # the thousands of files in them. Each is judged by its ACL and by its owner, who can
    # always change the ACL (Get-NonAdminWriter), but for -AnyOwner (the bundle's environment,
    # which install.ps1 extracted as whoever ran it, below a folder whose ACL it set at
    # creation: the ACL alone is judged); each is read once. The folders are listed one
    # level at a time: one that cannot be listed or whose rights cannot be read (access
    # denied, or a folder's path of 248 characters or more, which Windows PowerShell 5.1 cannot list) is a
    # problem named with its reason, not the end of the run, and it is not passed as checked;
    # a link is not followed (its target could be anything), and is a problem too.
    param([switch]$AnyOwner, [string]$Python = $PythonExe)
    $folder = Split-Path -Parent $Python
    $base = $folder
    if ([string]::Equals((Split-Path -Leaf $folder), 'Scripts', [StringComparison]::OrdinalIgnoreCase)) {
        $base = Split-Path -Parent $folder
    }
    $roots = @($base)
    $venv = Join-Path $base 'pyvenv.cfg'
    $venvLines = @()
    if (Test-Entry $venv) {  # one that may not be read is named, not skipped
        try {
            $venvLines = [IO.File]::ReadAllLines($venv)
        } catch {
            "$venv (could not be read: $($_.Exception.Message))"
        }
    }
    foreach ($line in $venvLines) {
        if ($line -cmatch '^\s*home\s*=\s*(.+?)\s*$' -and (Test-Entry $Matches[1])) {
            $roots += $Matches[1]
        }
    }
    $paths = New-Object System.Collections.Generic.List[string]
    foreach ($path in @($roots + $folder | Select-Object -Unique)) {
        $paths.Add($path)
    }
    $trees = New-Object System.Collections.Generic.List[string]
    foreach ($root in $roots) {
        foreach ($name in @('Lib', 'DLLs', 'Scripts', 'share', 'etc')) {
            $tree = Join-Path $root $name
            if (Test-Entry $tree) {  # one that may not be listed is named below, not skipped
                $trees.Add($tree)
            }
        }
    }
    for ($i = 0; $i -lt $trees.Count; $i++) {  # $trees grows as each folder is listed
        $tree = $trees[$i]
        try {
            if ([IO.File]::GetAttributes($tree) -band [IO.FileAttributes]::ReparsePoint) {
                "$tree (a link: the Python that every user runs must be real folders)"
                continue
            }
            $paths.Add($tree)
            foreach ($child in [IO.Directory]::GetDirectories($tree)) {
                $trees.Add($child)
            }
        } catch {
            "$tree (could not be listed: $($_.Exception.Message))"
        }
    }
    foreach ($pattern in @('*.exe', '*.dll', '*._pth', '*.pth')) {
        foreach ($file in @(Get-ChildItem -LiteralPath $folder -File -Filter $pattern)) {
            $paths.Add($file.FullName)
        }
    }
    $sitePackages = Join-Path $base 'Lib\site-packages'
    if (Test-Entry $sitePackages) {
        foreach ($file in @(Get-ChildItem -LiteralPath $sitePackages -File -Filter '*.pth')) {
            $paths.Add($file.FullName)
        }
    }
    foreach ($path in $paths) {
        try {
            $writers = @(Get-NonAdminWriter -Path $path -AnyOwner:$AnyOwner)
        } catch {
            "$path (its rights could not be read: $($_.Exception.Message))"
            continue
        }
        if ($writers.Count -gt 0) {
            "$path ($($writers -join ', '))"
        }
    }
}

# ---- safety: what every user's server and the broker run is administrators' alone, or nothing of the bundle runs ----
# install.ps1's preflight and detect.ps1 run the same checks (Get-SafetyProblem): Intune and SCCM
# run install.ps1 only when detection fails, so a check only install.ps1 made would never run
# there. When one fails where the bundle is installed, install.ps1 disables both tasks and
# stops the bundle's processes (Disable-UnsafeBundle), marks that in the receipt, and exits
# $ExitUnsafe; the next run whose checks all pass registers and starts them again. An
# administrator's own "off" is the policy value Enabled = 0 under $PolicyRoot\<name>, which
# the scripts only read: a check's disable and an administrator's are never confused.

function Test-BundleOff {
    # True when the policy value Enabled (a DWORD, as Group Policy Preferences or any management
    # tool sets it) under $PolicyRoot\$BundleName is 0: an administrator turned the bundle off.
    $value = [Microsoft.Win32.Registry]::GetValue("$PolicyRoot\$BundleName", 'Enabled', $null)
    return $null -ne $value -and [string]$value -eq '0'
}

function Test-BundleInstalled {
    # True when one of the bundle's tasks is registered, gen-bundle's: what a failed check disables.
    return @(@(Get-OurTask) + @(Get-OurTask -Name $BrokerTaskName) | Where-Object { Test-OurAuthor -Task $_ }).Count -gt 0
}

function Get-SafetyProblem {
    # Each way in which others than administrators could change what the bundle's tasks run, or
    # nothing: the install folders, %ProgramData%\jupyter (one a user made is not judged here:
    # install.ps1 renames it aside), the whole Python tree with its .pth files (judged by who can
    # write them, not by their presence: IT's own pip installs add .pth files), the bundle's
    # environment once it is in place ($EnvInPlace), and jupyter_core's version.
    param([bool]$EnvInPlace)
    foreach ($folder in @($InstallDir, $InstallRoot, $env:ProgramFiles)) {
        if (Test-Entry $folder) {  # one whose rights may not be read makes the checks fail (Get-PathSecurity throws)
            $writers = @(Get-NonAdminWriter -Path $folder)
            if ($writers.Count -gt 0) {
                "$folder can be changed by $($writers -join ', '): the task would run files that non-administrators can replace"
            }
        }
    }
    if ((Test-Entry $JupyterShared) -and -not (Get-UserMadeReason $JupyterShared)) {
        $problem = Get-AdminOnlyProblem $JupyterShared
        if ($problem) {
            "$($problem): every user's notebook server reads Jupyter settings and kernels from there, so whoever can change it could run code as every user. Check what is in it, then remove it or let only administrators write there (icacls `"$JupyterShared`" /setowner *S-1-5-32-544 /T and /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F *S-1-5-32-545:(OI)(CI)RX)"
        }
    }
    if (Test-Entry $PythonExe) {  # not Test-Path, which says "missing" for a file it may not read
        $pythonProblems = @(Get-PythonTreeProblem)
        if ($pythonProblems.Count -gt 0) {
            "the Python that every user's server runs can be changed by others than administrators, who could then run code as every user: $(@($pythonProblems | Select-Object -First 5) -join '; ')$(if ($pythonProblems.Count -gt 5) { " and $($pythonProblems.Count - 5) more" }). Install Python for all users under %ProgramFiles%, where only administrators can change it; a folder whose only problem is its owner is given to Administrators by icacls `"<folder>`" /setowner *S-1-5-32-544 /T /C"
        }
        if (-not $EnvFolder) {
            $jupyterCore = Get-JupyterCoreVersion
            if ($null -eq $jupyterCore) {
                Write-Warning "jupyter_core is not installed for $PythonExe yet (no jupyter_core-*.dist-info): install the notebook package there"
            } elseif (Test-VersionBelow -Version $jupyterCore -Minimum $JupyterCoreMinimum) {
                "jupyter_core $jupyterCore is installed for ${PythonExe}: before $JupyterCoreMinimum it reads settings and kernels from $JupyterShared for every user (CVE-2025-30167). Upgrade it first: `"$PythonExe`" -m pip install --upgrade `"jupyter_core>=$JupyterCoreMinimum`""
            }
        }
    } elseif (-not $EnvFolder) {
        Write-Warning "$PythonExe is not there yet: the servers start once Python with the notebook package is installed at that path."
    }
    if ($EnvFolder -and $EnvInPlace) {
        # What every user's server imports from the environment: no one else may change it.
        $envProblems = @(Get-PythonTreeProblem -Python (Join-Path $InstallDir "$EnvFolder\Scripts\python.exe") -AnyOwner)
        if ($envProblems.Count -gt 0) {
            "the bundle's environment can be changed by others than administrators, who could then run code as every user: $(@($envProblems | Select-Object -First 5) -join '; '). Run uninstall.ps1, then install.ps1, to extract it again admin-only"
        }
    }
}

function Disable-BundleRun {
    # Nothing of the bundle runs on: both of gen-bundle's tasks disabled (each asked first), its
    # launchers, servers and broker stopped, and its Start-menu entry deleted (it would run the guard
    # with that Python; install.ps1 creates it again with the tasks). $Reason says why, in each
    # question. The run's log starts here, where the state folders passed their check: these runs
    # end before the step that starts it otherwise.
    param([string]$Reason, [string]$Undo)
    if ($Run.StateSafe -and -not $Run.ContainsKey('Transcript') -and (Test-Path -LiteralPath $StateLogDir -PathType Container)) {
        Start-BundleLog -Script 'install'  # best effort (a full disk): nothing here may keep the tasks from being disabled
    }
    foreach ($name in @($TaskName, $BrokerTaskName)) {
        $task = @(Get-OurTask -Name $name)
        if ($task.Count -eq 0 -or -not (Test-OurAuthor -Task $task[0])) {
            continue
        }
        if (Test-TaskValue -Value $task[0].State -Enum 'State' -Name 'Disabled') {
            Write-Output "task: $TaskFolder$name is disabled"
        } elseif (Confirm-Change -Kind 'task-disable' -Target "$TaskFolder$name" -Action "Stop and disable the task: $Reason" -Undo $Undo) {
            Stop-ScheduledTask -TaskName $name -TaskPath $TaskFolder -ErrorAction SilentlyContinue
            Disable-ScheduledTask -TaskName $name -TaskPath $TaskFolder | Out-Null
            Write-Output "task: disabled $TaskFolder$name ($Reason)"
        }
    }
    Stop-BundleProcess -Process @(@(Get-BundleProcess) + @(Get-BundleProcess -Broker)) -Reason $Reason
    try {
        Remove-StartMenuEntry
    } catch {
        Write-Warning "start menu: $ShortcutPath stays ($($_.Exception.Message)); it runs nothing while the tasks are disabled but the guard"
    }
}

function Disable-UnsafeBundle {
    # A check failed where the bundle is installed: nothing of it runs on, and the receipt says
    # that a check disabled the tasks (the next run that passes every check enables them again;
    # a task disabled without that mark is an administrator's, as before).
    # The mark first: a disable that fails half-way is still known as the tool's.
    param([string[]]$Problem)
    Write-ReceiptMark -Name 'disabledByCheck' -Value ([ordered]@{ at = (Get-Date).ToUniversalTime().ToString('o'); problems = @($Problem) })
    Disable-BundleRun -Reason 'a security check failed (above)' -Undo 'the next run of install.ps1 whose checks all pass registers and starts it again'
}

function Write-ReceiptMark {
    # The receipt as it was, with $Name set to $Value: why the tool itself disabled the tasks
    # (disabledByCheck, disabledByPolicy), which tells the next run that they are not an
    # administrator's to leave alone. Written only into a state folder that passed its check.
    param([string]$Name, [object]$Value)
    $receipt = [ordered]@{}
    if ($null -ne $Run.OldReceipt) {
        foreach ($property in $Run.OldReceipt.PSObject.Properties) {
            $receipt[$property.Name] = $property.Value
        }
    }
    $receipt[$Name] = $Value
    if ((Test-Path -LiteralPath $StateDir -PathType Container) -and $Run.StateSafe -and
        (Confirm-Change -Kind 'receipt' -Target $ReceiptPath -Action "Write $Name into the receipt: the tasks were disabled by install.ps1, not by an administrator" -Undo 'the next run that enables the tasks writes the receipt anew')) {
        Write-ReceiptFile -Receipt $receipt
    }
}

# ---- probe: does the broker answer, is the server of each user logged on registered with it, and if not, why ----

function Get-InteractiveUser {
    # Each user with a desktop (an explorer.exe) on this machine: DOMAIN\name and SID. The
    # SID comes from the process itself, so Entra ID (AzureAD\...) accounts need no lookup.
    $found = @{}
    foreach ($explorer in @(Get-CimInstance -ClassName Win32_Process -Filter "Name = 'explorer.exe'" -ErrorAction SilentlyContinue)) {
        # -WhatIf:$false: Invoke-CimMethod honours -WhatIf, and under it would call nothing and find nobody.
        $owner = Invoke-CimMethod -InputObject $explorer -MethodName GetOwner -ErrorAction SilentlyContinue -WhatIf:$false
        $sid = Invoke-CimMethod -InputObject $explorer -MethodName GetOwnerSid -ErrorAction SilentlyContinue -WhatIf:$false
        if ($owner -and $owner.ReturnValue -eq 0 -and $sid -and $sid.ReturnValue -eq 0) {
            $found[$sid.Sid] = [pscustomobject]@{ Name = ('{0}\{1}' -f $owner.Domain, $owner.User); Sid = $sid.Sid }
        }
    }
    return @($found.Values | Sort-Object Name)
}

function Get-LauncherLog {
    # The launcher's log of the user with SID $Sid: $UserStateDir\$LauncherLogFile below that
    # user's profile folder, found through the profile list (this script runs as
    # an administrator or SYSTEM, whose own %LOCALAPPDATA% is elsewhere).
    param([string]$Sid)
    if ($Sid -cnotmatch '^S-1-[0-9-]+$') {
        return $null
    }
    $userProfile = @(Get-CimInstance -ClassName Win32_UserProfile -Filter "SID = '$Sid'" -ErrorAction SilentlyContinue)
    if ($userProfile.Count -eq 0) {
        return $null
    }
    return Join-Path $userProfile[0].LocalPath (Join-Path $UserStateDir $LauncherLogFile)
}

function Test-ReadThroughLink {
    # True when $Path is reached through a link (junction or symbolic link) at any of the levels
    # that $Relative, its part below the user's profile folder, names: the user owns them, and a
    # link there would have SYSTEM read, and print, another file.
    # A level whose attributes SYSTEM may not read (the user shut it out) counts as one: not read.
    param([string]$Path, [string]$Relative)
    $level = $Path
    foreach ($part in @($Relative.Split('\') | Where-Object { $_ })) {
        try {
            if ((Test-Entry $level) -and ([IO.File]::GetAttributes($level) -band [IO.FileAttributes]::ReparsePoint)) {
                return $true
            }
        } catch [UnauthorizedAccessException] {
            return $true
        }
        $level = Split-Path -Parent $level
    }
    return $false
}

function Write-ServerReport {
    # Why the server did not answer, as far as this script can see: each user's launcher log.
    param([object[]]$User)
    foreach ($account in $User) {
        $name = $account.Name
        $log = Get-LauncherLog -Sid $account.Sid
        if ($null -eq $log) {
            Write-Output "server: the profile of $name was not found; look at their %USERPROFILE%\$UserStateDir\$LauncherLogFile"
        } elseif (Test-ReadThroughLink -Path $log -Relative (Join-Path $UserStateDir $LauncherLogFile)) {
            Write-Output "server: $log is reached through a link that $name made, or one of its folders may not be read; it is not read as SYSTEM. Read it as $name."
        } elseif (-not (Test-Path -LiteralPath $log -PathType Leaf)) {
            Write-Output "server: $log does not exist: the task did not start the launcher for $name. Look at the task's last run result (Get-ScheduledTaskInfo -TaskPath '$TaskFolder' -TaskName '$TaskName') and its history (Event Viewer: Microsoft-Windows-TaskScheduler/Operational)."
        } else {
            Write-Output "server: the last lines of $log :"
            try {
                foreach ($line in @(Get-Content -LiteralPath $log -Tail $LogTailLines -Encoding UTF8)) {  # the launcher writes UTF-8; 5.1 would read ANSI
                    Write-Output "    $line"
                }
            } catch {
                Write-Output "    (not readable as SYSTEM: $($_.Exception.Message))"
            }
            Write-Output "server: look at the ERROR lines above and their Fix; the server's own output is $ServerLogFile beside that file."
        }
    }
}

function Get-BrokerLogLine {
    # The broker's log, its older part first. Get-Content shares the file for writing: the broker
    # appends to it meanwhile (and skips its rotation while the file is open here).
    foreach ($path in @("$BrokerLog.1", $BrokerLog)) {
        if (Test-Path -LiteralPath $path -PathType Leaf) {
            Get-Content -LiteralPath $path -Encoding UTF8 -ErrorAction SilentlyContinue  # ASCII: JSON with every other character escaped
        }
    }
}

function Write-BrokerReport {
    # Why the broker did not answer, or did not register a user's server: the last lines of its log
    # (administrators only read it), those that name $Sid when given.
    param([string]$Sid = '')
    $about = ''
    if ($Sid) {
        $about = " about $Sid"
    }
    $lines = @(Get-BrokerLogLine | Where-Object { $_.IndexOf($Sid, [StringComparison]::Ordinal) -ge 0 } | Select-Object -Last $LogTailLines)
    if ($lines.Count -eq 0) {
        Write-Output "broker: $BrokerLog has no line$about. Look at its task's last run result (Get-ScheduledTaskInfo -TaskPath '$TaskFolder' -TaskName '$BrokerTaskName') and the Application event log (source gen-bundle-broker)."
        return
    }
    Write-Output "broker: the last lines$about of $BrokerLog :"
    foreach ($line in $lines) {
        Write-Output "    $line"
    }
}

function Test-BrokerAnswer {
    # True when, within $Seconds, this bundle's broker holds the address (Test-BrokerHolds: a process
    # any user could start with the broker's command line is not enough) and answers HTTP at
    # http://NAME:PORT/: it answers every request, this script's (from session 0, or from a session
    # with no server) with a page of its own, 403 or 503, so any status counts. A broker whose task no
    # longer runs (its python.exe missing, say) will not answer: then it stops waiting after 5 s.
    param([int]$Seconds)
    $url = "http://${BundleName}:$BundlePort/"
    $start = Get-Date
    do {
        $response = $null
        if (Test-BrokerHolds) {
            try {
                $request = [Net.WebRequest]::Create($url)
                $request.Proxy = $null
                $request.Timeout = 2000
                $response = $request.GetResponse()
            } catch {
                # A 4xx or 5xx answer comes as a WebException that carries it, which PowerShell may hand
                # over wrapped in a MethodInvocationException.
                $failure = $_.Exception
                while ($null -ne $failure -and -not ($failure -is [Net.WebException])) {
                    $failure = $failure.InnerException
                }
                if ($null -ne $failure) {
                    $response = $failure.Response
                }
            }
        }
        if ($null -ne $response) {
            $response.Close()
            return $true
        }
        Start-Sleep -Milliseconds 500
        if (((Get-Date) - $start).TotalSeconds -gt 5 -and -not (Test-BrokerRunning)) {
            return $false
        }
    } while (((Get-Date) - $start).TotalSeconds -lt $Seconds)
    return $false
}

function Test-BrokerHolds {
    # True when the process listening on $BundleIp:$BundlePort is this bundle's broker: python.exe
    # running the installed broker file (Test-BrokerCommandLine), as LOCAL SERVICE, which no user can
    # start a process as.
    $listeners = @(Get-NetTCPConnection -State Listen -LocalPort $BundlePort -ErrorAction SilentlyContinue |
        Where-Object { $_.LocalAddress -eq $BundleIp })
    return $listeners.Count -gt 0 -and (Test-OurBroker -ProcessId $listeners[0].OwningProcess)
}

function Test-ServerRegistered {
    # True when the broker's log says that the server of the account $Sid is registered: its last
    # event 200 (registered) or 202 (registration ended) since the broker last started (event 100) is
    # 200; asked again each second until $Seconds have passed. Only the lines that name the SID or
    # event 100 are read as JSON; a line cut short (being written) is skipped.
    param([string]$Sid, [int]$Seconds)
    $start = Get-Date
    do {
        $registered = $false
        foreach ($line in @(Get-BrokerLogLine)) {
            if ($line.IndexOf($Sid, [StringComparison]::Ordinal) -lt 0 -and -not $line.Contains('"event": 100,') -and -not $line.Contains('"event": 103,')) {
                continue
            }
            try {
                $record = $line | ConvertFrom-Json
            } catch {
                continue
            }
            $id = Get-ReceiptValue $record 'event'
            if (($id -eq 100 -and $null -eq (Get-ReceiptValue $record 'carried')) -or $id -eq 103) {  # the broker, or its worker (which holds the registry), started again; not a start carried into a new log file
                $registered = $false
            } elseif (@(200, 202) -contains $id -and [string]::Equals([string](Get-ReceiptValue $record 'account'), $Sid, [StringComparison]::OrdinalIgnoreCase)) {
                $registered = $id -eq 200
            }
        }
        if ($registered) {
            return $true
        }
        if (((Get-Date) - $start).TotalSeconds -ge $Seconds) {
            return $false
        }
        Start-Sleep -Seconds 1
    } while ($true)
}

# ---- install: the steps of install.ps1, in its order; each decides from what the preflight found ----
# $Run holds what one step finds for the next: the bundle's checked bytes, the preflight's
# decisions, and what changed.
$Run = @{}

function Read-InstallBundle {
    # Every file checked against SHA256SUMS, read once into memory (exit 2 when one differs): the
    # first step, before the lock. An environment already extracted from the archive with the
    # SHA-256 SHA256SUMS names is not read again (Install-BundleEnvironment looks again under the lock).
    param([string]$PinnedSums)
    $inPlace = @{}
    if ($EnvFolder -and (Test-EnvironmentInPlace)) {
        $inPlace[$EnvArchive] = $EnvArchiveSha256
    }
    try {
        $Run.Files = Read-VerifiedBundle -PinnedSums $PinnedSums -InPlace $inPlace
    } catch [Security.SecurityException] {
        Stop-Bundle $ExitTampered "$($_.Exception.Message) Nothing was changed."
    }
    $Run.InPlace = $inPlace.Count -gt 0
    $Run.Changed = @()
    $Run.BrokerStopped = $false  # a step stopped the broker: Install-BrokerTask starts it again
}

function Test-InstallPreflight {
    # Every check before any change: each problem is named, and the run ends with exit 4 having
    # changed nothing - unless a security check failed where the bundle is installed: then nothing
    # of it runs on (Disable-UnsafeBundle), and the run ends with $ExitUnsafe. The policy value that
    # turns the bundle off, and a task of gen-bundle's that an administrator disabled (not a
    # check: the receipt says which), end it with exit 0: at every boot a startup script would
    # otherwise enable it again, and Group Policy or Intune would report a deliberate state as a
    # failure at every run (detect.ps1 reports it installed). The same for the broker's task.
    param([switch]$Force)
    # The state folders and the receipt first: the receipt says whether install.ps1 itself
    # disabled the tasks (a failed check, or the policy value), not an administrator.
    $stateProblems = @(Get-StateFolderProblem)
    $Run.StateSafe = $stateProblems.Count -eq 0
    $Run.OldReceipt = $null
    if ($Run.StateSafe) {
        $Run.OldReceipt = Read-Receipt  # missing or unreadable: written anew at the end
    }
    if (Test-BundleOff) {
        # An administrator's off (the policy value), which -Force does not override.
        if ($null -eq (Get-ReceiptValue $Run.OldReceipt 'disabledByPolicy')) {
            Write-ReceiptMark -Name 'disabledByPolicy' -Value ((Get-Date).ToUniversalTime().ToString('o'))  # first: see Disable-UnsafeBundle
        }
        Disable-BundleRun -Reason "the policy value Enabled = 0 under $PolicyRoot\$BundleName turns the bundle off" -Undo 'install.ps1 enables it again once the policy value is gone or not 0'
        Stop-Bundle 0 "the policy value Enabled = 0 under $PolicyRoot\$BundleName turns '$BundleName' off: its tasks stay disabled, and install.ps1 changes nothing else"
    }
    $problems = @($stateProblems)
    # The security checks come before anything that could end the run early: a task an
    # administrator disabled must not let the other run on from what others can change. Checks
    # that cannot finish (a file they may not read) count as failed: the run fails closed.
    try {
        $safety = @(Get-SafetyProblem -EnvInPlace $Run.InPlace)
    } catch {
        $safety = @("the security checks could not finish ($($_.Exception.Message)): what the tasks run may be changed by others")
    }
    $problems += $safety
    # A %ProgramData%\jupyter a user made is renamed aside by Install-JupyterShared; until then, on
    # a PC where the bundle is installed, it is a reason to disable it when the run stops early.
    $unsafe = @($safety)
    if (Test-Entry $JupyterShared) {
        $made = Get-UserMadeReason $JupyterShared
        if ($made) {
            $unsafe += "$JupyterShared is $made, and every user's server reads settings and kernels from it: install.ps1 renames it aside once every other check passes"
        }
    }
    $checkDisabled = $null -ne (Get-ReceiptValue $Run.OldReceipt 'disabledByCheck') -or $null -ne (Get-ReceiptValue $Run.OldReceipt 'disabledByPolicy')
    $adminMayKeep = -not $Force -and $unsafe.Count -eq 0  # a disabled task stays an administrator's choice only while it is safe
    $bundle = $Run.Files
    $Run.HostsLines = @(($Latin1.GetString($bundle[$HostsLinesFile]) -split "`r`n") | Where-Object { $_.Length -gt 0 })
    $Run.HostsBefore = Read-HostsText
    foreach ($mapping in @(Get-HostsMapping -Text $Run.HostsBefore)) {
        if ($mapping.Address -ne $BundleIp) {
            $problems += "$HostsPath maps '$BundleName' to $($mapping.Address) outside gen-bundle's block ('$($mapping.Line.Trim())'): remove that line first"
        } else {
            Write-Warning "$HostsPath already maps '$BundleName' to $BundleIp outside gen-bundle's block ('$($mapping.Line.Trim())'); that line is left alone, and stays after uninstall."
        }
    }
    $problems += @(Get-PortProblem)
    $taskBytes = $bundle[$TaskFile]
    $Run.TaskXml = [Text.Encoding]::Unicode.GetString($taskBytes, 2, $taskBytes.Length - 2)  # UTF-16LE after its BOM
    $wanted = [xml]$Run.TaskXml
    $Run.TaskWanted = $wanted
    $existingTask = @(Get-OurTask)
    $Run.RegisterTask = $true
    $Run.TaskWasDisabled = $false
    if ($existingTask.Count -gt 0) {
        $task = $existingTask[0]
        if ((Test-TaskDisabledByAdmin -Task $task -ByCheck $checkDisabled) -and $adminMayKeep) {
            Stop-Bundle 0 "task: $TaskFolder$TaskName is disabled, as an administrator left it; install.ps1 changes nothing (run it with -Force to install and enable the task again)"
        }
        $Run.TaskWasDisabled = Test-TaskDisabledByAdmin -Task $task -ByCheck $checkDisabled
        if (-not (Test-OurAuthor -Task $task) -and -not $Force) {
            $problems += "a task $TaskFolder$TaskName exists that gen-bundle did not create: run with -Force to replace it"
        }
        $Run.RegisterTask = -not (Test-TaskCurrent -Task $task -Wanted $wanted)
    }
    $brokerBytes = $bundle[$BrokerTaskFile]
    $Run.BrokerTaskXml = [Text.Encoding]::Unicode.GetString($brokerBytes, 2, $brokerBytes.Length - 2)  # UTF-16LE after its BOM
    $Run.BrokerTaskWanted = [xml]$Run.BrokerTaskXml
    $existingBroker = @(Get-OurTask -Name $BrokerTaskName)
    $Run.RegisterBroker = $true
    $Run.BrokerWasDisabled = $false
    if ($existingBroker.Count -gt 0) {
        $broker = $existingBroker[0]
        if ((Test-TaskDisabledByAdmin -Task $broker -ByCheck $checkDisabled) -and $adminMayKeep) {
            Stop-Bundle 0 "task: $TaskFolder$BrokerTaskName is disabled, as an administrator left it; install.ps1 changes nothing (run it with -Force to install and enable the task again)"
        }
        $Run.BrokerWasDisabled = Test-TaskDisabledByAdmin -Task $broker -ByCheck $checkDisabled
        if (-not (Test-OurAuthor -Task $broker) -and -not $Force) {
            $problems += "a task $TaskFolder$BrokerTaskName exists that gen-bundle did not create: run with -Force to replace it"
        }
        $Run.RegisterBroker = -not (Test-BrokerTaskCurrent -Task $broker -Wanted $Run.BrokerTaskWanted)
    }
    $problems += @(Get-BrokerLogProblem)
    foreach ($folder in @($InstallDir, $InstallRoot, $env:ProgramFiles)) {
        if (Test-Path -LiteralPath $folder -PathType Container) {
            if (-not (Test-UsersRead $folder)) {
                $problems += "$folder does not let users read and run what is in it, and the task and the Start-menu entry run the launcher below it as each user. Let them: icacls `"$folder`" /grant *S-1-5-32-545:(OI)(CI)RX"
            }
        }
    }
    # uninstall.ps1 deletes %ProgramData%\jupyter only when an install created it: one that was
    # there before belongs to whoever made it (and its removal would open every other Jupyter
    # on the PC to CVE-2025-30167 again). The receipt carries that from run to run.
    $Run.JupyterCreated = (Get-ReceiptValue $Run.OldReceipt 'jupyterSharedCreated') -eq $true
    if ($EnvFolder) {
        $problems += @(Get-BasePythonProblem)
        if (-not $Run.InPlace) {
            $problems += @(Get-EnvironmentSpaceProblem)
        }
    }
    if ($BundleWindow -eq 'hidden' -and [Environment]::OSVersion.Version.Build -lt 17763) {
        $problems += "Windows build $([Environment]::OSVersion.Version.Build) has no conhost.exe --headless (it came with Windows 10 1809, build 17763), so the task could not start the launcher: make the bundle with --window minimized"
    }
    $Run.Shortcut = Get-Shortcut
    if ($null -ne $Run.Shortcut -and -not ([string]$Run.Shortcut.Description).StartsWith($ShortcutMark, [StringComparison]::Ordinal) -and -not $Force) {
        $problems += "$ShortcutPath exists and gen-bundle did not create it: run with -Force to replace it"
    }
    if ($problems.Count -gt 0) {
        foreach ($problem in @($problems + $unsafe | Select-Object -Unique)) {
            $Host.UI.WriteErrorLine("PREFLIGHT: $problem")
        }
        if ($unsafe.Count -eq 0 -or -not (Test-BundleInstalled)) {
            Stop-Bundle $ExitPreflight 'a check before any change failed (above). Nothing was changed.'
        }
        # Installed, and unsafe: what the tasks would run is no longer administrators' alone.
        Disable-UnsafeBundle -Problem $unsafe
        $done = if ($WhatIfPreference) { 'would be' } else { 'are' }
        Stop-Bundle $ExitUnsafe "a security check failed where '$BundleName' is installed (above): its tasks $done disabled and its processes stopped. Fix what is named; the next run of install.ps1 whose checks all pass enables them again."
    }
}

function Install-StateFolder {
    # The first change, after every check: the state folders (each level with its own ACL), the
    # log of this run there, and a copy of the engine that detect.ps1 loads (Intune runs
    # detect.ps1 alone, without the bundle's files).
    $levels = @(
        @($InstallRoot, (New-AdminOnlySecurity -UsersRead)), @($StateRoot, (New-AdminOnlySecurity)),
        @($StateDir, (New-AdminOnlySecurity)), @($StateLogDir, (New-AdminOnlySecurity)))
    $missing = @($levels | Where-Object { -not (Test-Entry $_[0]) } | ForEach-Object { "$($_[0]) ($(Format-FolderSecurity $_[1]))" })
    if ($missing.Count -gt 0 -and (Confirm-Change -Kind 'state-folder' -Target $StateLogDir -Action "Create, one level at a time, each with its own ACL from its creation: $($missing -join '; ')" -Undo 'stays: the logs of the runs, for the record')) {
        New-StateFolder
    }
    Start-BundleLog -Script 'install'
    Write-Output 'preflight: passed (every check above)'
    $engine = Join-Path $StateDir $EngineFile
    $bytes = $Run.Files[$EngineFile]
    if ((Test-Path -LiteralPath $engine -PathType Leaf) -and [string]::Equals((Get-Sha256 ([IO.File]::ReadAllBytes($engine))), (Get-Sha256 $bytes), [StringComparison]::Ordinal)) {
        Write-Output "engine: $engine is already in place"
    } elseif (Confirm-Change -Kind 'engine-copy' -Target $engine -Action "Copy $EngineFile there (the state folder's ACL: administrators only), for detect.ps1" -Undo 'uninstall.ps1 deletes it') {
        [IO.File]::WriteAllBytes($engine, $bytes)
        $Run.Changed += "engine $engine"
    }
}

function Install-BrokerLogFolder {
    # The broker's log folder, with its ACL from its creation: the broker's task SID writes there (and
    # nothing else of LOCAL SERVICE), administrators read what it writes, users have no access. One
    # that is there passed the preflight (Get-BrokerLogProblem) and keeps its ACL.
    if (Test-Entry $BrokerLogDir) {
        Write-Output "broker: $BrokerLogDir is there; only administrators and the broker's task can change it"
        return
    }
    $acl = Format-FolderSecurity (New-AdminOnlySecurity -Writer $BrokerTaskSid)
    if (Confirm-Change -Kind 'broker-log-folder' -Target $BrokerLogDir -Action "Create the folder, empty: the broker writes its log there (the broker's task SID $BrokerTaskSid may write)" -Acl $acl -Undo 'stays: the broker''s log, for the record, with the logs of the runs') {
        New-AdminOnlyFolder -Path $BrokerLogDir -Writer $BrokerTaskSid
        $problem = Get-AdminOnlyProblem -Path $BrokerLogDir -Writer $BrokerTaskSid
        if ($problem) {
            throw "${problem}: someone made it between the preflight and now; check what is in it, then remove it"
        }
        Write-Output "broker: created $BrokerLogDir (administrators and the broker's task only)"
        $Run.Changed += "folder $BrokerLogDir"
    }
}

function New-InstallFolder {
    # The bundle's install folder, where missing: owner Administrators (the security checks judge
    # owners: an administrator's own account would not do), SYSTEM and administrators write, users
    # read and run, set at its creation.
    if (-not (Test-Path -LiteralPath $InstallDir -PathType Container)) {
        New-AdminOnlyFolder -Path $InstallDir -UsersRead
    }
}

function Install-BundleFiles {
    # The launcher, the server's settings, the guard and the broker: the bytes checked against
    # SHA256SUMS. What runs a file that changes is stopped first: the launchers and servers (cmd.exe
    # reads a batch file while it runs it). The broker is not: python.exe has read its file, and its
    # supervisor, which holds the address, starts every worker from the file: once the file is
    # written, the worker alone is stopped (Restart-BrokerWorker) and the address is never free.
    $bundle = $Run.Files
    $stale = @($InstalledFiles | Where-Object {
        $target = Join-Path $InstallDir $_
        -not (Test-Path -LiteralPath $target -PathType Leaf) -or
            -not [string]::Equals((Get-FileHash -LiteralPath $target -Algorithm SHA256).Hash, (Get-Sha256 $bundle[$_]), [StringComparison]::OrdinalIgnoreCase)
    })
    $replaced = @($stale | Where-Object { Test-Path -LiteralPath (Join-Path $InstallDir $_) })
    if (@($replaced | Where-Object { $_ -ne $BrokerFile }).Count -gt 0) {
        Stop-BundleProcess -Process @(Get-BundleProcess) -Reason 'before their files are replaced'
    }
    foreach ($file in $InstalledFiles) {
        $target = Join-Path $InstallDir $file
        if ($stale -notcontains $file) {
            Write-Output "files: $target is already in place"
        } elseif (Confirm-Change -Kind 'file' -Target $target -Action "Write $file, the bytes checked against SHA256SUMS, beside it and swapped in (a new file takes the install folder's ACL: administrators write, users read and run; a replaced one keeps its own)" -Undo 'uninstall.ps1 deletes the install folder') {
            New-InstallFolder
            Write-SwappedFile -Path $target -Bytes $bundle[$file]  # the bytes checked against SHA256SUMS
            Write-Output "files: wrote $file to $target"
            $Run.Changed += "file $target"
            if ($file -eq $BrokerFile -and $replaced -contains $file) {
                Restart-BrokerWorker
            }
        }
    }
}

function Restart-BrokerWorker {
    # The broker's worker stopped, and not its supervisor: the supervisor keeps the address and
    # starts a new worker from the file just written within seconds (connections wait in its queue
    # meanwhile). The supervisor itself runs the code it started with until its task starts again
    # (at the next boot). Its worker is the one started with 'worker' after the broker's file, or,
    # when Windows does not show command lines (Test-LoggedBroker), what the supervisor started.
    $file = [regex]::Escape((Join-Path $InstallDir $BrokerFile))
    $workers = @(Get-BundleProcess -Broker | Where-Object {
        if ($null -eq $_.CommandLine) { -not (Test-LoggedBroker $_) } else { $_.CommandLine -match ($file + '"?\s+worker\s') }
    })
    Stop-BundleProcess -Process $workers -Reason 'the broker''s worker: its supervisor, which keeps the address, starts a new one from the new file'
}

function Stop-BrokerForChange {
    # The broker stopped before this run changes what it runs ($Why); Install-BrokerTask starts it
    # again, and Start-StoppedBroker at the end of a run that fails before that step.
    param([string]$Why)
    if (Confirm-Change -Kind 'broker-start' -Target "$TaskFolder$BrokerTaskName" -Action "Stop the broker $Why; install.ps1 starts it again once its task is in place" -Undo 'install.ps1 starts it again in its next step') {
        Stop-BrokerTask
        $Run.BrokerStopped = $true
    }
}

function Start-StoppedBroker {
    # A broker this run stopped (Stop-BrokerForChange) and did not start again, the run having
    # failed before the broker's step: while none runs, any account could take the address.
    if ($Run.ContainsKey('BrokerStopped') -and $Run.BrokerStopped -and -not (Test-BrokerRunning) -and
        (Confirm-Change -Kind 'broker-start' -Target "$TaskFolder$BrokerTaskName" -Action 'Start the broker again: the run ended before the broker''s step' -Undo 'uninstall.ps1 stops and unregisters it')) {
        try {
            Start-ScheduledTask -TaskName $BrokerTaskName -TaskPath $TaskFolder
        } catch {
            Write-Warning "broker: could not start $TaskFolder$BrokerTaskName again ($($_.Exception.Message))"
        }
    }
}

function Install-HostsBlock {
    # The bundle's block in the hosts file; every other byte kept, the previous file kept beside it.
    $after = Set-HostsBlock -Text $Run.HostsBefore -Block $Run.HostsLines
    if ([string]::Equals($after, $Run.HostsBefore, [StringComparison]::Ordinal)) {
        Write-Output "hosts: the block for '$BundleName' is already in place"
    } elseif (Confirm-Change -Kind 'hosts' -Target $HostsPath -Action (Get-HostsChange -Before $Run.HostsBefore -After $after) -Undo 'uninstall.ps1 removes the block') {
        Write-HostsFile -Block $Run.HostsLines
        Clear-NameCache
        $Run.Changed += "hosts block in $HostsPath"
    }
}

function Stop-BrokerTask {
    # The broker's task stopped, and any process of the broker that outlived it: a task still Running
    # ignores the next start (IgnoreNew), and a broker still holding the address would keep the next
    # one from it (event 101).
    if (@(Get-OurTask -Name $BrokerTaskName).Count -gt 0) {
        Stop-ScheduledTask -TaskName $BrokerTaskName -TaskPath $TaskFolder
    }
    for ($wait = 0; $wait -lt 20 -and (Test-BrokerRunning); $wait++) {
        Start-Sleep -Milliseconds 500
    }
    Stop-BundleProcess -Process @(Get-BundleProcess -Broker) -Reason 'the broker, which its task no longer runs'
}

function Install-BrokerTask {
    # The broker's boot task, from its XML checked against SHA256SUMS, then the broker running: started
    # when it is not. A running one is never stopped here: it keeps the definition it started with
    # until its next start (Install-BundleFiles has its worker take a new file).
    $name = "$TaskFolder$BrokerTaskName"
    $registered = $false
    if (-not $Run.RegisterBroker) {
        Write-Output "broker: $name is already registered with this definition"
    } else {
        $exec = $Run.BrokerTaskWanted.Task.Actions.Exec
        $principal = $Run.BrokerTaskWanted.Task.Principals.Principal
        $text = "Register the broker's task from ${BrokerTaskFile}: at boot it runs $($exec.Command) $($exec.Arguments) in $($exec.WorkingDirectory) as LOCAL SERVICE ($($principal.UserId)) with its own task SID $BrokerTaskSid (ProcessTokenSidType $($principal.ProcessTokenSidType)) and no privilege but $($principal.RequiredPrivileges.Privilege), no time limit"
        if ($Run.BrokerWasDisabled) {
            $text += '; -Force: the task an administrator disabled is enabled again'
        }
        if (Confirm-Change -Kind 'broker-task' -Target $name -Action $text -Undo 'uninstall.ps1 stops and unregisters it') {
            Register-ScheduledTask -TaskName $BrokerTaskName -TaskPath $TaskFolder -Xml $Run.BrokerTaskXml -Force | Out-Null
            Write-Output "broker: registered $name"
            $Run.Changed += "task $name"
            $registered = $true
        }
    }
    if (Test-BrokerRunning) {
        # Never stopped to take a new definition: while no broker runs, any account could take
        # the address. The running one keeps the definition it started with until the next boot.
        if ($registered) {
            Write-Output "broker: $name keeps running; its new definition applies from its next start (the next boot)"
        } else {
            Write-Output "broker: $name is running"
        }
        return
    }
    if (Confirm-Change -Kind 'broker-start' -Target $name -Action "Start the broker's task: the broker holds ${BundleIp}:$BundlePort from now on" -Undo 'uninstall.ps1 stops and unregisters it') {
        Start-ScheduledTask -TaskName $BrokerTaskName -TaskPath $TaskFolder
        Write-Output "broker: started $name"
    }
}

function Install-BundleTask {
    # The logon task, from the task XML checked against SHA256SUMS.
    if (-not $Run.RegisterTask) {
        Write-Output "task: $TaskFolder$TaskName is already registered with this definition"
        return
    }
    $exec = $Run.TaskWanted.Task.Actions.Exec
    $principal = $Run.TaskWanted.Task.Principals.Principal
    $who = if ($BundleScope -eq 'machine') { "each member of the group $($principal.GroupId) (BUILTIN\Users), at their logon" } else { "$($principal.UserId), at their logon" }
    $text = "Register the logon task from ${TaskFile}: it runs $($exec.Command) $($exec.Arguments) in $($exec.WorkingDirectory) as $who, least privilege, no time limit"
    if ($Run.TaskWasDisabled) {
        $text += '; -Force: the task an administrator disabled is enabled again'
    }
    if (Confirm-Change -Kind 'task' -Target "$TaskFolder$TaskName" -Action $text -Undo 'uninstall.ps1 unregisters the task') {
        Register-ScheduledTask -TaskName $TaskName -TaskPath $TaskFolder -Xml $Run.TaskXml -Force | Out-Null
        Write-Output "task: registered $TaskFolder$TaskName"
        $Run.Changed += "task $TaskFolder$TaskName"
    }
}

function Install-JupyterShared {
    # %ProgramData%\jupyter, owned by administrators, settled before either task is registered.
    # Judged here, at the step, not from the preflight: any user may create it in between. One a
    # user made (a link, an owner other than SYSTEM or Administrators, or one administrators may
    # not read) is renamed aside as it is, under a name nobody can guess, and named in the log -
    # never taken over, which would make its kernels every user's. Made again each time (a user
    # racing the run): three times, then the run fails - and where the bundle is installed it is
    # disabled first (exit $ExitUnsafe), as when a check fails.
    try {
        for ($attempt = 1; $attempt -le 3; $attempt++) {
            if (Test-Entry $JupyterShared) {
                $reason = Get-UserMadeReason $JupyterShared
                if (-not $reason) {
                    Write-Output "jupyter: $JupyterShared is there, and only administrators can change it"
                    return
                }
                $aside = $JupyterShared + '.user-made-' + [Guid]::NewGuid().ToString('N')
                if (Confirm-Change -Kind 'jupyter-aside' -Target $JupyterShared -Action "Rename it to $aside, as it is: it is $reason, and every user's server would run the settings and kernels in it" -Undo 'stays: what was there, under its new name, for an administrator to look at') {
                    if ([IO.File]::GetAttributes($JupyterShared) -band [IO.FileAttributes]::Directory) {
                        [IO.Directory]::Move($JupyterShared, $aside)  # a junction: the link itself is renamed
                    } else {
                        [IO.File]::Move($JupyterShared, $aside)
                    }
                    Write-Warning "jupyter: $JupyterShared was $reason; renamed it to $aside, as it is"
                    $Run.Changed += "moved $JupyterShared to $aside"
                } else {
                    return
                }
            }
            $acl = Format-FolderSecurity (New-AdminOnlySecurity -UsersRead)
            if (Confirm-Change -Kind 'jupyter-folder' -Target $JupyterShared -Action 'Create the folder, empty' -Acl $acl -Undo 'uninstall.ps1 deletes it when it is empty (the receipt says install.ps1 made it)') {
                New-AdminOnlyFolder -Path $JupyterShared -UsersRead
                if (-not (Get-AdminOnlyProblem $JupyterShared)) {
                    Write-Output "jupyter: created $JupyterShared (administrators write, users read)"
                    $Run.Changed += "folder $JupyterShared"
                    $Run.JupyterCreated = $true
                    return
                }
                Write-Warning "jupyter: someone made $JupyterShared again just now"
            } else {
                return
            }
        }
        throw "someone made it again each time it was renamed aside"
    } catch {
        $failure = "$JupyterShared could not be made administrators' own: $($_.Exception.Message)"
        if (-not (Test-BundleInstalled)) {
            throw $failure
        }
        $Host.UI.WriteErrorLine("PREFLIGHT: $failure")
        Disable-UnsafeBundle -Problem $failure
        Stop-Bundle $ExitUnsafe "'$BundleName' is installed, and every user's server would read settings and kernels from a $JupyterShared that is not administrators' own: its tasks are disabled and its processes stopped. The next run of install.ps1 tries again."
    }
}

function Install-StartMenuEntry {
    # The Start-menu entry for all users: it holds no secret.
    $target = Join-Path $env:SystemRoot 'System32\cmd.exe'
    $description = "$ShortcutMark opens $BundleUrl signed in, when the server there runs as you"
    $shortcut = $Run.Shortcut
    if ($null -ne $shortcut -and [string]::Equals($shortcut.TargetPath, $target, [StringComparison]::OrdinalIgnoreCase) -and
        [string]::Equals($shortcut.Arguments, $ShortcutArguments, [StringComparison]::Ordinal) -and
        [string]::Equals($shortcut.WorkingDirectory, $InstallDir, [StringComparison]::OrdinalIgnoreCase) -and
        [string]::Equals($shortcut.Description, $description, [StringComparison]::Ordinal)) {
        Write-Output "start menu: $ShortcutPath is already in place"
    } elseif (Confirm-Change -Kind 'shortcut' -Target $ShortcutPath -Action "Create the Start-menu entry for all users: $target $ShortcutArguments, in $InstallDir, window minimized (it takes the all-users Start menu's ACL)" -Undo 'uninstall.ps1 deletes it') {
        $link = (New-Object -ComObject WScript.Shell).CreateShortcut($ShortcutPath)
        $link.TargetPath = $target
        $link.Arguments = $ShortcutArguments
        $link.WorkingDirectory = $InstallDir
        $link.WindowStyle = 7  # minimized: the console window of cmd.exe is not shown in front
        $link.Description = $description
        $link.Save()
        Write-Output "start menu: created $ShortcutPath"
        $Run.Changed += "start menu entry $ShortcutPath"
    }
}

function Write-InstallReceipt {
    # What this install changed and when, for the record and for uninstall.ps1.
    $sums = Get-Sha256 $Run.Files[$SumsFile]
    # A receipt that says install.ps1 disabled the tasks is written anew: they run again now.
    $current = (Get-ReceiptValue $Run.OldReceipt 'sha256sums') -eq $sums -and $null -eq (Get-ReceiptValue $Run.OldReceipt 'disabledByCheck') -and
        $null -eq (Get-ReceiptValue $Run.OldReceipt 'disabledByPolicy')
    if (($Run.Changed.Count -gt 0 -or -not $current) -and (Confirm-Change -Kind 'receipt' -Target $ReceiptPath -Action 'Write the receipt of this install' -Undo 'uninstall.ps1 deletes it')) {
        $receipt = [ordered]@{
            bundle      = $BundleName
            version     = $EngineVersion
            sha256sums  = $sums
            installedAt = (Get-Date).ToUniversalTime().ToString('o')
            installedBy = "$env:USERDOMAIN\$env:USERNAME"
            files       = @($InstalledFiles | ForEach-Object { Join-Path $InstallDir $_ })
            environment = $(if ($EnvFolder) { Join-Path $InstallDir $EnvFolder } else { $null })
            hostsFile   = $HostsPath
            hostsLines  = $Run.HostsLines
            task        = "$TaskFolder$TaskName"
            brokerTask  = "$TaskFolder$BrokerTaskName"
            brokerLog   = $BrokerLogDir
            startMenu   = $ShortcutPath
            jupyterShared = $JupyterShared
            jupyterSharedCreated = $Run.JupyterCreated
            engine      = Join-Path $StateDir $EngineFile
            changedNow  = $Run.Changed
        }
        Write-ReceiptFile -Receipt $receipt
        Write-Output "receipt: $ReceiptPath"
    }
}

function Start-BundleServer {
    # First the broker: anything that answers at the bundle's address is it (exit 5 with the end of its
    # log when nothing does). Then for whoever is logged on: the task started unless each one's server
    # is registered with the broker, and each one's registration awaited (exit 5 with the end of that
    # user's launcher.log and the broker's lines about them). Nobody logged on: the server starts and
    # registers at the next logon. -WhatIf sends no request and reads no log.
    # Every change is made: the lock goes now, so that the wait for the servers below (a user's
    # broken launcher makes it the longest) does not keep other gen-bundle runs waiting.
    Exit-BundleRun
    $users = @(Get-InteractiveUser)
    if ($BundleScope -eq 'user') {
        $users = @($users | Where-Object { [string]::Equals($_.Name, $TaskUser, [StringComparison]::OrdinalIgnoreCase) })
    }
    $names = @($users | ForEach-Object { $_.Name }) -join ', '
    if ($WhatIfPreference) {
        Write-Output "server: would ask http://${BundleName}:$BundlePort/ whether the broker answers, then wait up to $ProbeSeconds s for the server of each user logged on ($names) to register with it, starting the task for them when it is not registered; -WhatIf sends no request"
        if ($users.Count -gt 0) {
            # In the plan, as a real run would ask it (-WhatIf cannot tell whether it would).
            $null = Confirm-Change -Kind 'task-start' -Target "$TaskFolder$TaskName" -Action "Start the task for $names, unless their servers are registered with the broker" -Undo 'the server ends at logoff, or when uninstall.ps1 stops it'
        }
        return
    }
    if (-not (Test-BrokerAnswer -Seconds $ProbeSeconds)) {
        Write-BrokerReport
        Stop-Bundle $ExitNoAnswer "installed, but nothing answered at http://${BundleName}:$BundlePort/: the broker, which its task $TaskFolder$BrokerTaskName runs, does not hold the address. The end of its log is above."
    }
    Write-Output "broker: http://${BundleName}:$BundlePort/ answers"
    if ($users.Count -eq 0) {
        if ($BundleScope -eq 'machine') {
            Write-Output 'server: nobody is logged on; the server starts at the next logon'
        } else {
            Write-Output "server: $TaskUser is not logged on; the server starts at their next logon"
        }
        return
    }
    $waiting = @($users | Where-Object { -not (Test-ServerRegistered -Sid $_.Sid -Seconds 0) })
    if ($waiting.Count -eq 0) {
        Write-Output "server: registered with the broker for $names"
        return
    }
    if (@(Get-BundleProcess).Count -gt 0) {
        Write-Output "server: a launcher already runs; waiting up to $ProbeSeconds s for the server of $names to register with the broker"
    } elseif (Confirm-Change -Kind 'task-start' -Target "$TaskFolder$TaskName" -Action "Start the task for $names" -Undo 'the server ends at logoff, or when uninstall.ps1 stops it') {
        Start-ScheduledTask -TaskName $TaskName -TaskPath $TaskFolder
    } else {
        return
    }
    $deadline = (Get-Date).AddSeconds($ProbeSeconds)  # for all of them together, not each
    $missing = @($waiting | Where-Object { -not (Test-ServerRegistered -Sid $_.Sid -Seconds ([Math]::Max(0, [int]($deadline - (Get-Date)).TotalSeconds))) })
    if ($missing.Count -eq 0) {
        Write-Output "server: registered with the broker for $names"
        return
    }
    Write-ServerReport -User $missing
    foreach ($account in $missing) {
        Write-BrokerReport -Sid $account.Sid
    }
    Stop-Bundle $ExitNoAnswer "installed, but the server of $(@($missing | ForEach-Object { $_.Name }) -join ', ') did not register with the broker within $ProbeSeconds s: the launcher's log and the broker's lines about them are above."
}

function Stop-BundleRun {
    # At the end of every run, however it ends: a broker it stopped started again, its outcome in the event log, the plan written
    # (-Plan), the log closed, the lock released - in a console the process, whose end would release it, outlives the run, and the
    # next run (Group Policy, Intune) would wait for it and fail.
    param([string]$PlanPath)
    try {
        Start-StoppedBroker
    } catch {
        Write-Warning "broker: $($_.Exception.Message)"
    }
    try {
        Write-RunEvent
    } finally {
        try {
            Write-BundlePlan -Path $PlanPath
        } finally {
            try {
                if ($Run.ContainsKey('Transcript') -and $Run.Transcript) {
                    Stop-Transcript | Out-Null
                }
            } finally {
                Exit-BundleRun
            }
        }
    }
}

# ---- uninstall: the steps of uninstall.ps1, in its order ----

function Read-UninstallBundle {
    # uninstall.ps1 itself against SHA256SUMS (and SHA256SUMS against -SumsSha256: exit 2), then
    # elevation (exit 3), then one gen-bundle run at a time (Enter-BundleRun); then the hosts file read (one it
    # cannot edit: exit 4 before any change) and the state folders judged: they are used only
    # when each one that is there is admin-only (admin-only.ps1).
    param([string]$PinnedSums)
    try {
        $null = Read-VerifiedBundle -PinnedSums $PinnedSums
    } catch [Security.SecurityException] {
        Stop-Bundle $ExitTampered "$($_.Exception.Message) Nothing was changed."
    }
    $null = Confirm-Elevated -Script 'uninstall.ps1'
    Enter-BundleRun
    $Run.HostsBefore = Read-HostsText
    $stateProblems = @(Get-StateFolderProblem)
    foreach ($problem in $stateProblems) {
        Write-Warning "state: $problem. uninstall.ps1 writes no log and deletes no receipt there."
    }
    $Run.StateSafe = (Test-Entry $StateDir) -and $stateProblems.Count -eq 0
    $Run.Receipt = $null
    if ($Run.StateSafe) {
        $Run.Receipt = Read-Receipt
        Start-BundleLog -Script 'uninstall'
    }
}

function Remove-BundleTask {
    # The logon task, then the broker's task (each only gen-bundle's, unless -Force), each stopped
    # first; then the task folder when nothing else is in it.
    param([switch]$Force)
    $gone = @()  # the names of the tasks that are not there, or no longer (under -WhatIf: would not be)
    foreach ($item in @(@($TaskName, 'task-remove', 'the logon task'), @($BrokerTaskName, 'broker-task-remove', 'the broker''s task: the address is free once it has stopped'))) {
        $name = $item[0]
        $task = @(Get-OurTask -Name $name)
        if ($task.Count -eq 0) {
            Write-Output "task: $TaskFolder$name is not registered"
            $gone += $name
        } elseif (-not (Test-OurAuthor -Task $task[0]) -and -not $Force) {
            Write-Warning "task: $TaskFolder$name was not created by gen-bundle; it is left alone (-Force removes it)"
        } elseif (Confirm-Change -Kind $item[1] -Target "$TaskFolder$name" -Action "Stop and unregister $($item[2])" -Undo 'install.ps1 registers it again') {
            Stop-ScheduledTask -TaskName $name -TaskPath $TaskFolder -ErrorAction SilentlyContinue
            Unregister-ScheduledTask -TaskName $name -TaskPath $TaskFolder -Confirm:$false
            Write-Output "task: unregistered $TaskFolder$name"
            $gone += $name
        } elseif ($WhatIfPreference) {
            $gone += $name  # -WhatIf: as it would be
        }
    }
    $scheduler = New-Object -ComObject Schedule.Service
    $scheduler.Connect()
    try {
        $folder = $scheduler.GetFolder($TaskFolder.TrimEnd('\'))
    } catch {
        return  # no task folder
    }
    # What stays in it once the bundle's tasks are gone (under -WhatIf they are still there: not counted).
    $others = @($folder.GetTasks(1) | Where-Object { $gone -notcontains $_.Name })
    if ($others.Count -eq 0 -and $folder.GetFolders(0).Count -eq 0 -and
        (Confirm-Change -Kind 'task-folder-remove' -Target $TaskFolder -Action 'Delete the task folder, empty once the bundle''s tasks are gone' -Undo 'install.ps1 makes it again with the tasks')) {
        $scheduler.GetFolder('\').DeleteFolder($TaskFolder.Trim('\'), 0)
        Write-Output "task: deleted the empty folder $TaskFolder"
    }
}

function Remove-HostsBlock {
    # gen-bundle's block for this bundle; every other byte kept, the previous file kept beside it.
    $after = Set-HostsBlock -Text $Run.HostsBefore -Block @()
    if ([string]::Equals($after, $Run.HostsBefore, [StringComparison]::Ordinal)) {
        Write-Output "hosts: no gen-bundle block for '$BundleName'"
    } elseif (Confirm-Change -Kind 'hosts' -Target $HostsPath -Action (Get-HostsChange -Before $Run.HostsBefore -After $after) -Undo 'install.ps1 adds the block again') {
        Write-HostsFile -Block @()
        Clear-NameCache
    }
}

function Remove-BundleFiles {
    # The install folder with the files and every Python environment in it; an environment goes
    # whole or not at all: renamed first, deleted only when nothing uses it.
    foreach ($environment in @(Get-EnvironmentFolder)) {
        if (Confirm-Change -Kind 'environment-remove' -Target $environment -Action 'Delete the Python environment (renamed first: not while a program uses it)' -Undo 'install.ps1 extracts it again') {
            if (-not (Remove-EnvironmentFolder -Path $environment)) {
                throw "$environment is in use by a program that is not this bundle's (or could not be deleted yet); it stays whole. Stop that program, then run uninstall.ps1 again"
            }
            Write-Output "environment: deleted $environment"
        }
    }
    if (-not (Test-Path -LiteralPath $InstallDir)) {
        Write-Output "files: $InstallDir is not there"
    } elseif (Confirm-Change -Kind 'files-remove' -Target $InstallDir -Action 'Delete the folder and the files in it' -Undo 'install.ps1 writes them again') {
        for ($attempt = 1; ; $attempt++) {
            try {
                Remove-Item -LiteralPath $InstallDir -Recurse -Force
                break
            } catch {
                if ($attempt -ge 5) {
                    throw
                }
                Start-Sleep -Seconds 1  # a process that was just stopped may still hold the folder
            }
        }
        Write-Output "files: deleted $InstallDir"
    }
    # The folder of all bundles, when it is empty (under -WhatIf: once this bundle's folder is gone).
    if ((Test-Path -LiteralPath $InstallRoot -PathType Container) -and
        @(Get-ChildItem -LiteralPath $InstallRoot -Force | Where-Object { -not ($WhatIfPreference -and $_.Name -eq (Split-Path -Leaf $InstallDir)) }).Count -eq 0 -and
        (Confirm-Change -Kind 'root-remove' -Target $InstallRoot -Action 'Delete the folder of all bundles, empty once this one is gone' -Undo 'install.ps1 makes it again')) {
        Remove-Item -LiteralPath $InstallRoot -Force
        Write-Output "files: deleted the empty folder $InstallRoot"
    }
}

function Remove-StartMenuEntry {
    # The Start-menu entry for all users (only gen-bundle's, unless -Force).
    param([switch]$Force)
    $shortcut = Get-Shortcut
    if ($null -eq $shortcut) {
        Write-Output "start menu: $ShortcutPath is not there"
    } elseif (-not ([string]$shortcut.Description).StartsWith($ShortcutMark, [StringComparison]::Ordinal) -and -not $Force) {
        Write-Warning "start menu: $ShortcutPath was not created by gen-bundle; it is left alone (-Force removes it)"
    } elseif (Confirm-Change -Kind 'shortcut-remove' -Target $ShortcutPath -Action 'Delete the Start-menu entry' -Undo 'install.ps1 creates it again') {
        Remove-Item -LiteralPath $ShortcutPath -Force
        Write-Output "start menu: deleted $ShortcutPath"
    }
}

function Remove-JupyterShared {
    # %ProgramData%\jupyter, only when the receipt says install.ps1 created it, no other bundle is
    # installed (it keeps users from putting settings there for that bundle's servers too), and empty.
    if (-not (Test-Path -LiteralPath $JupyterShared -PathType Container)) {
        Write-Output "jupyter: $JupyterShared is not there"
    } elseif ((Get-ReceiptValue $Run.Receipt 'jupyterSharedCreated') -ne $true) {
        Write-Output "jupyter: $JupyterShared was there before the install (or no receipt says otherwise); it is left alone"
    } elseif (@(Get-ChildItem -LiteralPath $StateRoot -Directory -Force | Where-Object { $_.Name -ne (Split-Path -Leaf $StateDir) -and (Test-Path -LiteralPath (Join-Path $_.FullName (Split-Path -Leaf $ReceiptPath)) -PathType Leaf) }).Count -gt 0) {
        Write-Output "jupyter: another gen-bundle bundle is installed (its receipt is in $StateRoot); $JupyterShared stays, owned by administrators, for its servers"
    } elseif (@(Get-ChildItem -LiteralPath $JupyterShared -Force).Count -eq 0 -and
        -not ((Get-Item -LiteralPath $JupyterShared -Force).Attributes -band [IO.FileAttributes]::ReparsePoint) -and
        (Confirm-Change -Kind 'jupyter-remove' -Target $JupyterShared -Action 'Delete the empty folder, which install.ps1 created' -Undo 'install.ps1 creates it again')) {
        Remove-Item -LiteralPath $JupyterShared -Force
        Write-Output "jupyter: deleted the empty folder $JupyterShared"
    }
}

function Remove-BundleState {
    # The receipt and detect.ps1's copy of the engine; the logs stay, for the record: the runs' and
    # the broker's (its folder, which grants the broker's task SID, stays with them).
    if (-not $Run.StateSafe) {
        return
    }
    foreach ($item in @(@($ReceiptPath, 'receipt-remove', 'Delete the receipt'), @((Join-Path $StateDir $EngineFile), 'engine-copy-remove', "Delete detect.ps1's copy of the engine"))) {
        if ((Test-Path -LiteralPath $item[0] -PathType Leaf) -and (Confirm-Change -Kind $item[1] -Target $item[0] -Action $item[2] -Undo 'install.ps1 writes it again')) {
            Remove-Item -LiteralPath $item[0] -Force
            Write-Output "state: deleted $($item[0])"
        }
    }
    foreach ($leftover in @("$ReceiptPath.new", "$ReceiptPath.old")) {  # what a swap cut short left (Write-SwappedFile)
        if ((Test-Path -LiteralPath $leftover -PathType Leaf) -and (Confirm-Change -Kind 'receipt-remove' -Target $leftover -Action 'Delete what a cut-short write of the receipt left' -Undo 'none needed')) {
            Remove-Item -LiteralPath $leftover -Force
            Write-Output "state: deleted $leftover"
        }
    }
}

# ---- detect: is this bundle installed, at this version? Read only; nothing here changes anything ----

function Test-Installed {
    # The files, the environment, the tasks (the broker's running), the hosts block and the receipt
    # are this bundle's, and every check of install.ps1's that judges whether they may run passes
    # (Get-SafetyProblem); or an administrator turned the bundle off (the policy value) or
    # disabled one of gen-bundle's tasks, which install.ps1 leaves as it is. Tasks a failed check
    # disabled are not installed: Intune and SCCM then run install.ps1, which says why (exit 6).
    if (Test-BundleOff) {
        # Off as the policy wants only once install.ps1 disabled what runs: until then "not
        # installed", so that Intune runs install.ps1, which disables them.
        foreach ($name in @($TaskName, $BrokerTaskName)) {
            $found = @(Get-OurTask -Name $name)
            if ($found.Count -gt 0 -and (Test-OurAuthor -Task $found[0]) -and
                -not (Test-TaskValue -Value $found[0].State -Enum 'State' -Name 'Disabled')) {
                Write-Verbose "the policy value turns the bundle off, and $TaskFolder$name is still enabled: install.ps1 disables it"
                return $false
            }
        }
        Write-Verbose "the policy value Enabled = 0 under $PolicyRoot\$BundleName turns the bundle off; its tasks are disabled"
        return $true
    }
    $receipt = Read-Receipt
    if ($null -ne (Get-ReceiptValue $receipt 'disabledByCheck') -or $null -ne (Get-ReceiptValue $receipt 'disabledByPolicy')) {
        Write-Verbose "install.ps1 disabled the bundle's tasks (a failed check, or the policy value, now gone); $ReceiptPath says why"
        return $false
    }
    # The security checks before a disabled task is taken for an administrator's choice: the other
    # task may run on. The environment is judged by its folder's ACLs when it is there.
    $safety = @(Get-SafetyProblem -EnvInPlace ([bool]$EnvFolder -and [IO.Directory]::Exists((Join-Path $InstallDir $EnvFolder))))
    if ($safety.Count -gt 0) {
        foreach ($problem in $safety) {
            Write-Verbose "unsafe: $problem"
        }
        return $false
    }
    if ((Test-Entry $JupyterShared) -and (Get-UserMadeReason $JupyterShared)) {
        Write-Verbose "$JupyterShared was made by a user: install.ps1 renames it aside"
        return $false
    }
    $task = @(Get-OurTask)
    $broker = @(Get-OurTask -Name $BrokerTaskName)
    foreach ($found in @{ $TaskName = $task; $BrokerTaskName = $broker }.GetEnumerator()) {
        if ($found.Value.Count -gt 0 -and (Test-TaskDisabledByAdmin -Task $found.Value[0] -ByCheck $false)) {
            # install.ps1 changes nothing while an administrator keeps a task disabled (it exits 0):
            # reported as installed, so that Intune or SCCM do not run install.ps1 at every cycle.
            Write-Verbose "task $TaskFolder$($found.Key): disabled by an administrator; install.ps1 leaves the bundle as it is"
            return $true
        }
    }
    foreach ($file in $InstalledFiles) {
        $path = Join-Path $InstallDir $file
        if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
            Write-Verbose "missing: $path"
            return $false
        }
        if (-not [string]::Equals((Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash, $ExpectedSha[$file], [StringComparison]::OrdinalIgnoreCase)) {
            Write-Verbose "not this bundle's: $path"
            return $false
        }
    }
    if (-not (Test-Entry $JupyterShared)) {
        Write-Verbose "missing: $JupyterShared"
        return $false
    }
    if ($EnvFolder -and -not (Test-EnvironmentInPlace)) {
        Write-Verbose "environment: $(Join-Path $InstallDir $EnvFolder) is missing or incomplete"
        return $false
    }
    if ($task.Count -eq 0 -or -not (Test-OurAuthor -Task $task[0])) {
        Write-Verbose "task $TaskFolder${TaskName}: missing, or not gen-bundle's"
        return $false
    }
    # The broker holds the address from boot: a broker that does not run is not installed (install.ps1 starts it).
    if ($broker.Count -eq 0 -or -not (Test-OurAuthor -Task $broker[0]) -or
        -not (Test-TaskValue -Value $broker[0].State -Enum 'State' -Name 'Running')) {
        Write-Verbose "task $TaskFolder${BrokerTaskName}: missing, not gen-bundle's, or not running"
        return $false
    }
    if (-not (Test-BrokerHolds)) {
        Write-Verbose "${BundleIp}:${BundlePort}: not held by this bundle's broker (its log's event 101 names the holder)"
        return $false
    }
    $hostsLines = @((Read-HostsText) -split "`r?`n" | ForEach-Object { $_.TrimStart([char]0xEF, [char]0xBB, [char]0xBF) })
    $at = [array]::IndexOf($hostsLines, $ExpectedHostsLines[0])
    if ($at -lt 0 -or $at + 2 -ge $hostsLines.Count -or -not [string]::Equals($hostsLines[$at + 1], $ExpectedHostsLines[1], [StringComparison]::Ordinal) -or
        -not [string]::Equals($hostsLines[$at + 2], $ExpectedHostsLines[2], [StringComparison]::Ordinal)) {
        Write-Verbose "hosts: gen-bundle's block for '$BundleName' is missing or different"
        return $false
    }
    if (-not (Test-Path -LiteralPath $ReceiptPath -PathType Leaf)) {
        Write-Verbose "missing: $ReceiptPath"
        return $false
    }
    return $true
}

function Write-BundleDetected {
    # detect.ps1's answer: one line when the bundle is installed, at this version, else nothing
    # (the reason with -Verbose), whatever fails on the way. First the script against SHA256SUMS
    # when it is beside it (Intune runs it alone), then the machine.
    param([string]$PinnedSums)
    $WarningPreference = 'SilentlyContinue'  # any output counts as "detected": the checks' warnings are for install.ps1
    try {
        $null = Read-VerifiedBundle -PinnedSums $PinnedSums -Optional
        if (Test-Installed) {
            Write-Output "gen-bundle $BundleName $EngineVersion is installed"
        }
    } catch {
        Write-Verbose "detection failed: $($_.Exception.Message)"
    }
}

# ---- environment-marker: is the bundle's Python environment in place, whole? ----
$EnvMarkerFile = 'gen-bundle-env.txt'  # in the environment's folder: the archive's SHA-256 and its file count, written last

function Test-EnvironmentInPlace {
    # Complete only when its marker names this archive and the folder still holds as many files
    # as it had when the marker was written (one that an antivirus quarantined, or a half-deleted
    # one, is not): the marker is written last, inside the staging folder, before the one rename
    # that gives the folder its final name.
    $folder = Join-Path $InstallDir $EnvFolder
    $marker = Join-Path $folder $EnvMarkerFile
    if (-not (Test-Path -LiteralPath $marker -PathType Leaf)) {
        return $false
    }
    $fields = [IO.File]::ReadAllText($marker).Trim().Split(' ')
    if ($fields.Count -ne 2 -or -not [string]::Equals($fields[0], $EnvArchiveSha256, [StringComparison]::Ordinal)) {
        return $false
    }
    try {
        $count = [IO.Directory]::GetFiles($folder, '*', [IO.SearchOption]::AllDirectories).Length
    } catch {
        return $false  # a folder in it cannot be listed: not whole, as far as this script can tell
    }
    return [string]$count -eq $fields[1]
}

# ---- environment-remove: deleting the bundle's Python environments, each whole or not at all ----

function Get-EnvironmentFolder {
    # This bundle's environment folders in the install folder, whichever lock made them:
    # env-<12 hex>, and what an interrupted run left (.env-<12 hex>.partial or .remove; and
    # .env-<12 hex>.partial.remove, which gen-bundle before 0.3.1 made of a staging folder).
    if (-not (Test-Path -LiteralPath $InstallDir -PathType Container)) {
        return @()
    }
    return @(Get-ChildItem -LiteralPath $InstallDir -Directory -Force | Where-Object {
        $_.Name -cmatch '^(env-[0-9a-f]{12}|\.env-[0-9a-f]{12}\.(partial|remove|partial\.remove))$'
    } | ForEach-Object { $_.FullName })
}

function Get-EnvironmentUser {
    # The processes that run a program from the environment folder $Path (a server, a kernel, the broker).
    param([string]$Path)
    return @(Get-CimInstance -ClassName Win32_Process | Where-Object {
        $null -ne $_.ExecutablePath -and $_.ExecutablePath.StartsWith($Path + '\', [StringComparison]::OrdinalIgnoreCase)
    })
}

function Remove-EnvironmentFolder {
    # An environment goes whole or not at all: it is first renamed, which Windows refuses while
    # any process runs a program from it or holds one of its files open (a server, a kernel);
    # only a folder that nothing uses is then deleted. Returns $false when it is in use.
    param([string]$Path)
    if (@(Get-EnvironmentUser -Path $Path).Count -gt 0) {
        return $false
    }
    $leaf = Split-Path -Leaf $Path
    $retired = $Path
    if (-not $leaf.EndsWith('.remove', [StringComparison]::Ordinal)) {
        # A staging folder too retires as .env-<12 hex>.remove: a name Get-EnvironmentFolder finds
        # again, and no longer than the staging name, the longest the environment's files get.
        $retired = Join-Path $InstallDir ('.' + $leaf.TrimStart('.').Replace('.partial', '') + '.remove')
        if (Test-Path -LiteralPath $retired) {
            Remove-Item -LiteralPath $retired -Recurse -Force
        }
        try {
            [IO.Directory]::Move($Path, $retired)
        } catch {
            return $false
        }
    }
    try {
        Remove-Item -LiteralPath $retired -Recurse -Force
    } catch {
        Write-Warning "environment: $retired could not be deleted yet ($($_.Exception.Message)); the next run deletes it"
        return $false
    }
    return $true
}

# ==== environment: the bundle's own Python environment (--env) ====

# ---- environment: the bundle's own Python environment (--env), extracted beside the launcher ----
# python-env.zip holds the files of every wheel of pylock.toml, already installed (on the build
# machine) as a virtual environment. Here they are only extracted and wired to the base Python:
# nothing of the environment runs while it is installed, and nothing runs pip.

function Get-PeMachine {
    # The CPU an .exe is built for, from its PE header (0x8664: x64), read without running it.
    param([string]$Path)
    $stream = [IO.File]::OpenRead($Path)
    try {
        $reader = New-Object IO.BinaryReader($stream)
        if ($stream.Length -lt 64) {
            return 0
        }
        $stream.Position = 60
        $offset = $reader.ReadInt32()
        if ($offset -lt 0 -or $offset + 6 -gt $stream.Length) {
            return 0
        }
        $stream.Position = $offset
        if ($reader.ReadUInt32() -ne 0x00004550) {
            return 0  # no "PE\0\0" signature
        }
        return [int]$reader.ReadUInt16()
    } finally {
        $stream.Dispose()
    }
}

function Get-VenvLauncher {
    # The launcher a base install carries for virtual environments, as python -m venv copies it:
    # Lib\venv\scripts\nt\venvlauncher.exe (CPython 3.13 and later), else python.exe there.
    param([string]$Window)
    $nt = Join-Path (Split-Path -Parent $PythonExe) 'Lib\venv\scripts\nt'
    foreach ($name in @("venv$($Window)launcher.exe", "python$Window.exe")) {
        $path = Join-Path $nt $name
        if (Test-Path -LiteralPath $path -PathType Leaf) {
            return $path
        }
    }
    return $null
}

function Get-BasePythonProblem {
    # The base Python the environment is wired to, checked from its files, never run: python.exe,
    # the python3NN.dll of the CPython version the wheels are for, x64, and its venv launcher.
    $folder = Split-Path -Parent $PythonExe
    $minor = $EnvPythonVersion.Split('.')[1]
    $installer = "the python.org installer python-$EnvPythonVersion.<n>-amd64.exe for all users first (InstallAllUsers=1 TargetDir=`"$folder`")"
    if (-not (Test-Path -LiteralPath $PythonExe -PathType Leaf)) {
        return @("the environment runs on Python $EnvPythonVersion (64-bit) at $PythonExe, which is not there: deploy $installer")
    }
    $problems = @()
    if (-not (Test-Path -LiteralPath (Join-Path $folder "python3$minor.dll") -PathType Leaf)) {
        $found = @(Get-ChildItem -LiteralPath $folder -Filter 'python3*.dll' -ErrorAction SilentlyContinue | ForEach-Object { $_.Name }) -join ', '
        $problems += "the environment's wheels are for CPython $EnvPythonVersion, but $folder has no python3$minor.dll (it has: $(if ($found) { $found } else { 'none' })): deploy $installer, or make the bundle for the version installed there (--python-version)"
    }
    if ((Get-PeMachine $PythonExe) -ne 0x8664) {
        $problems += "$PythonExe is not a 64-bit (x64) Python, and the environment's wheels are win_amd64: deploy $installer"
    }
    if ($null -eq (Get-VenvLauncher)) {
        $problems += "$folder\Lib\venv\scripts\nt holds no venv launcher (venvlauncher.exe or python.exe), which the environment's Scripts\python.exe is a copy of: repair that Python with $installer"
    }
    return $problems
}

function Get-EnvironmentSpaceProblem {
    # Room for the environment beside the one in use (its files, and some to spare).
    $drive = New-Object IO.DriveInfo([IO.Path]::GetPathRoot($InstallRoot))
    $needed = $EnvUnpackedBytes + 64 * 1024 * 1024
    if ($drive.AvailableFreeSpace -lt $needed) {
        return "the environment needs $([math]::Ceiling($needed / 1048576)) MB on drive $($drive.Name), which has $([math]::Floor($drive.AvailableFreeSpace / 1048576)) MB free"
    }
}

function Get-OldEnvironment {
    # This bundle's environment folders but the current one: earlier locks' environments, and
    # what an interrupted run left.
    return @(Get-EnvironmentFolder | Where-Object { -not [string]::Equals((Split-Path -Leaf $_), $EnvFolder, [StringComparison]::OrdinalIgnoreCase) })
}

function Install-Environment {
    # Extracts the verified archive into a staging folder beside the final one, wires it to the
    # base Python as python -m venv would (pyvenv.cfg, the venv launcher as Scripts\python.exe),
    # writes the marker, and renames it into place: a server never sees a half-written environment.
    param([byte[]]$Archive)
    $final = Join-Path $InstallDir $EnvFolder
    $staging = Join-Path $InstallDir ".$EnvFolder.partial"
    foreach ($leftover in @($staging, $final)) {
        if ((Test-Path -LiteralPath $leftover) -and -not (Remove-EnvironmentFolder -Path $leftover)) {
            throw "$leftover is incomplete and in use by a running program: stop it, then run install.ps1 again"
        }
    }
    # SYSTEM and administrators write, users read and run: set on the folder itself, not
    # inherited, so that a right given to users on the install folder does not reach it.
    New-AdminOnlyFolder -Path $staging -UsersRead
    $root = [IO.Path]::GetFullPath($staging).TrimEnd('\') + '\'
    Add-Type -AssemblyName System.IO.Compression
    $zip = New-Object IO.Compression.ZipArchive((New-Object IO.MemoryStream(, $Archive)), [IO.Compression.ZipArchiveMode]::Read)
    $count = 0
    try {
        foreach ($entry in $zip.Entries) {
            $name = $entry.FullName
            if ($name.EndsWith('/', [StringComparison]::Ordinal)) {
                continue
            }
            # The archive was checked against SHA256SUMS; its names are checked all the same.
            if ($name.Contains('\') -or $name.Contains(':') -or $name.StartsWith('/', [StringComparison]::Ordinal) -or @($name.Split('/')) -contains '..') {
                throw "$EnvArchive holds the entry '$name', which is not a plain relative path"
            }
            $path = [IO.Path]::GetFullPath($root + $name.Replace('/', '\'))
            if (-not $path.StartsWith($root, [StringComparison]::OrdinalIgnoreCase)) {
                throw "$EnvArchive holds the entry '$name', which points outside the environment"
            }
            [void][IO.Directory]::CreateDirectory([IO.Path]::GetDirectoryName($path))
            $source = $entry.Open()
            try {
                $target = New-Object IO.FileStream($path, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write)
                try {
                    $source.CopyTo($target)
                } finally {
                    $target.Dispose()
                }
            } finally {
                $source.Dispose()
            }
            $count++
        }
    } finally {
        $zip.Dispose()
    }
    $baseFolder = Split-Path -Parent $PythonExe
    $version = [string](Get-Item -LiteralPath $PythonExe).VersionInfo.ProductVersion
    if ($version -notmatch '^3\.[0-9]+\.[0-9]+') {
        $version = $EnvPythonVersion
    }
    $config = "home = $baseFolder`r`ninclude-system-site-packages = false`r`nversion = $version`r`nexecutable = $PythonExe`r`n"
    [IO.File]::WriteAllText((Join-Path $staging 'pyvenv.cfg'), $config, (New-Object Text.UTF8Encoding($false)))
    [void][IO.Directory]::CreateDirectory((Join-Path $staging 'Scripts'))
    Copy-Item -LiteralPath (Get-VenvLauncher) -Destination (Join-Path $staging 'Scripts\python.exe')
    $windowed = Get-VenvLauncher -Window 'w'
    if ($null -ne $windowed) {
        Copy-Item -LiteralPath $windowed -Destination (Join-Path $staging 'Scripts\pythonw.exe')
    }
    $files = [IO.Directory]::GetFiles($staging, '*', [IO.SearchOption]::AllDirectories).Length + 1
    [IO.File]::WriteAllText((Join-Path $staging $EnvMarkerFile), "$EnvArchiveSha256 $files", [Text.Encoding]::ASCII)
    for ($attempt = 1; ; $attempt++) {
        try {
            [IO.Directory]::Move($staging, $final)  # an antivirus scanning the new files may hold one briefly
            break
        } catch {
            if ($attempt -ge 5) {
                throw
            }
            Start-Sleep -Seconds 2
        }
    }
    return $count
}

function Install-BundleEnvironment {
    # The bundle's Python environment, beside any earlier one: the launcher written next switches to it.
    $envPath = Join-Path $InstallDir $EnvFolder
    if ($Run.InPlace -and -not (Test-Path -LiteralPath (Join-Path $envPath $EnvMarkerFile) -PathType Leaf)) {
        # Found whole before the lock, and gone since: another run (uninstall.ps1) took it away.
        Stop-Bundle $ExitBusy "$envPath was taken away by another gen-bundle run while this one waited for the lock; the next run extracts it again."
    }
    if ($Run.InPlace) {
        Write-Output "environment: $envPath is already in place"
    } elseif (Confirm-Change -Kind 'environment' -Target $envPath -Action "Extract $EnvArchive there, through the staging folder .$EnvFolder.partial beside it, and wire it to $PythonExe" -Acl (Format-FolderSecurity (New-AdminOnlySecurity -UsersRead)) -Undo 'uninstall.ps1 deletes it') {
        New-InstallFolder
        if (@(Get-EnvironmentUser -Path $envPath).Count -gt 0) {
            # A damaged environment of this same lock that the servers or the broker still run from:
            # Windows refuses to rename it while they do. The launchers and servers are stopped, and
            # the broker, which Install-BrokerTask starts again (or Stop-BundleRun, when this fails).
            Stop-BundleProcess -Process @(Get-BundleProcess) -Reason "they run from $envPath, which is extracted again"
            Stop-BrokerForChange "while $envPath, which it runs from, is extracted again"
        }
        $extracted = Install-Environment -Archive $Run.Files[$EnvArchive]  # failed: Stop-BundleRun starts the broker again
        Write-Output "environment: extracted $extracted files to $envPath, wired to $PythonExe"
        $Run.Changed += "environment $envPath"
    }
}

function Remove-OldEnvironment {
    # Earlier environments of the bundle, each deleted whole, and only once no program runs from it.
    foreach ($old in @(Get-OldEnvironment)) {
        if (Confirm-Change -Kind 'environment-remove' -Target $old -Action 'Delete this earlier environment of the bundle, unless a program still runs from it' -Undo 'none needed: an earlier lock made it') {
            if (Remove-EnvironmentFolder -Path $old) {
                Write-Output "environment: deleted the earlier $old"
                $Run.Changed += "deleted $old"
            } else {
                Write-Warning "environment: $old is still in use (a server or kernel runs from it); it stays whole, and the next run of install.ps1 deletes it"
            }
        }
    }
}
