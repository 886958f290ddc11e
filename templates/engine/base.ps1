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
