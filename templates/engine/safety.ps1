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
