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
