# ---- install: the steps of install.ps1, in its order; each decides from what the preflight found ----
# $Run holds what one step finds for the next: the bundle's checked bytes, the preflight's
# decisions, and what changed. $Lock is the run's lock (Lock-Bundle), which Stop-BundleRun releases.
$Run = @{}
$Lock = $null

function Read-InstallBundle {
    # One run of the bundle at a time (not under -WhatIf, which changes nothing), then every file
    # checked against SHA256SUMS, read once into memory (exit 2 when one differs). An environment
    # already extracted from the archive with the SHA-256 SHA256SUMS names is not read again.
    param([string]$PinnedSums)
    if (-not $WhatIfPreference) {
        $script:Lock = Lock-Bundle -Seconds $LockWaitSeconds
    }
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
}

function Test-InstallPreflight {
    # Every check before any change: each problem is named, and the run ends with exit 4 having
    # changed nothing. A task of gen-bundle's that an administrator disabled ends it with exit 0:
    # at every boot a startup script would otherwise enable it again, and Group Policy or Intune
    # would report a deliberate state as a failure at every run (detect.ps1 reports it installed).
    param([switch]$Force, [switch]$AllowSessionHost)
    $problems = @()
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
        if ((Test-TaskDisabledByAdmin $task) -and -not $Force) {
            Stop-Bundle 0 "task: $TaskFolder$TaskName is disabled, as an administrator left it; install.ps1 changes nothing (run it with -Force to install and enable the task again)"
        }
        $Run.TaskWasDisabled = Test-TaskDisabledByAdmin $task
        if (-not [string]::Equals([string]$task.Author, 'gen-bundle', [StringComparison]::Ordinal) -and -not $Force) {
            $problems += "a task $TaskFolder$TaskName exists that gen-bundle did not create: run with -Force to replace it"
        }
        $Run.RegisterTask = -not (Test-TaskCurrent -Task $task -Wanted $wanted)
    }
    foreach ($folder in @($InstallDir, $InstallRoot, $env:ProgramFiles)) {
        if (Test-Path -LiteralPath $folder -PathType Container) {
            $writers = @(Get-NonAdminWriter -Path $folder)
            if ($writers.Count -gt 0) {
                $problems += "$folder can be changed by $($writers -join ', '): the task would run files that non-administrators can replace"
            }
            if (-not (Test-UsersRead $folder)) {
                $problems += "$folder does not let users read and run what is in it, and the task and the Start-menu entry run the launcher below it as each user. Let them: icacls `"$folder`" /grant *S-1-5-32-545:(OI)(CI)RX"
            }
        }
    }
    # Jupyter reads settings and kernel definitions from %ProgramData%\jupyter (jupyter_core
    # before 5.8.1: settings too, CVE-2025-30167), and every user's server would run what is
    # there. Under %ProgramData% users may create folders and files, so it must exist, and
    # belong to administrators, before any server starts.
    $Run.CreateJupyterShared = -not (Test-Entry $JupyterShared)
    if (-not $Run.CreateJupyterShared) {
        $problem = Get-AdminOnlyProblem $JupyterShared
        if ($problem) {
            $problems += "$($problem): every user's notebook server reads Jupyter settings and kernels from there, so whoever can change it could run code as every user. Check what is in it, then remove it or let only administrators write there (icacls `"$JupyterShared`" /setowner *S-1-5-32-544 /T and /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F *S-1-5-32-545:(OI)(CI)RX)"
        }
    }
    $stateProblems = @(Get-StateFolderProblem)
    $problems += $stateProblems
    $Run.OldReceipt = $null
    if ($stateProblems.Count -eq 0) {
        $Run.OldReceipt = Read-Receipt  # missing or unreadable: written anew at the end
    }
    # uninstall.ps1 deletes %ProgramData%\jupyter only when an install created it: one that was
    # there before belongs to whoever made it (and its removal would open every other Jupyter
    # on the PC to CVE-2025-30167 again). The receipt carries that from run to run.
    $Run.JupyterCreated = (Get-ReceiptValue $Run.OldReceipt 'jupyterSharedCreated') -eq $true
    if ($PythonPerUser) {
        Write-Verbose "python.exe is per user ($PythonExe); each user's own, so it is not checked here."
    } elseif (Test-Path -LiteralPath $PythonExe -PathType Leaf) {
        $pythonProblems = @(Get-PythonTreeProblem)
        if ($pythonProblems.Count -gt 0) {
            $problems += "the Python that every user's server runs can be changed by others than administrators, who could then run code as every user: $(@($pythonProblems | Select-Object -First 5) -join '; ')$(if ($pythonProblems.Count -gt 5) { " and $($pythonProblems.Count - 5) more" }). Install Python for all users under %ProgramFiles%, or make a bundle with a per-user --python"
        }
        if ($EnvFolder) {
            Write-Verbose "jupyter_core: the environment's own, pinned in pylock.toml"
        } else {
            $jupyterCore = Get-JupyterCoreVersion
            if ($null -eq $jupyterCore) {
                Write-Warning "jupyter_core is not installed for $PythonExe yet (no jupyter_core-*.dist-info): install the notebook package there"
            } elseif (Test-VersionBelow -Version $jupyterCore -Minimum $JupyterCoreMinimum) {
                $problems += "jupyter_core $jupyterCore is installed for ${PythonExe}: before $JupyterCoreMinimum it reads settings and kernels from $JupyterShared for every user (CVE-2025-30167). Upgrade it first: `"$PythonExe`" -m pip install --upgrade `"jupyter_core>=$JupyterCoreMinimum`""
            }
        }
    } elseif (-not $EnvFolder) {
        Write-Warning "$PythonExe is not there yet: the servers start once Python with the notebook package is installed at that path."
    }
    if ($EnvFolder) {
        $problems += @(Get-BasePythonProblem)
        if (-not $Run.InPlace) {
            $problems += @(Get-EnvironmentSpaceProblem)
        } else {
            # What every user's server imports from the environment: no one else may change it.
            $envProblems = @(Get-PythonTreeProblem -Python (Join-Path $InstallDir "$EnvFolder\Scripts\python.exe"))
            if ($envProblems.Count -gt 0) {
                $problems += "the bundle's environment can be changed by others than administrators, who could then run code as every user: $(@($envProblems | Select-Object -First 5) -join '; '). Run uninstall.ps1, then install.ps1, to extract it again admin-only"
            }
        }
    }
    if ($BundleWindow -eq 'hidden' -and [Environment]::OSVersion.Version.Build -lt 17763) {
        $problems += "Windows build $([Environment]::OSVersion.Version.Build) has no conhost.exe --headless (it came with Windows 10 1809, build 17763), so the task could not start the launcher: make the bundle with --window minimized"
    }
    $Run.Shortcut = Get-Shortcut
    if ($null -ne $Run.Shortcut -and -not ([string]$Run.Shortcut.Description).StartsWith($ShortcutMark, [StringComparison]::Ordinal) -and -not $Force) {
        $problems += "$ShortcutPath exists and gen-bundle did not create it: run with -Force to replace it"
    }
    if ($BundleScope -eq 'machine' -and -not $AllowSessionHost) {
        # A check that cannot be made refuses too: silence here would install a shared address
        # on a Remote Desktop Session Host.
        try {
            $terminal = @(Get-CimInstance -Namespace 'root\cimv2\TerminalServices' -ClassName Win32_TerminalServiceSetting -ErrorAction Stop)
            if ($terminal.Count -gt 0 -and $terminal[0].TerminalServerMode -eq 1) {
                $problems += "this computer is a Remote Desktop Session Host: every user who logs on gets a server at the same address, $BundleIp`:$BundlePort, and only one can hold it at a time, so the others' servers wait and their browsers reach someone else's (README.md, 'Shared PCs'). Make one bundle per user instead (gen-bundle --scope user --user DOMAIN\name, each with its own --name and --ip), or run install.ps1 -AllowSessionHost to accept this"
            }
        } catch {
            $problems += "whether this computer is a Remote Desktop Session Host could not be read (Win32_TerminalServiceSetting: $($_.Exception.Message)). On a Session Host every user's server would want the same address; run install.ps1 -AllowSessionHost to install without this check"
        }
    }
    if ($problems.Count -gt 0) {
        foreach ($problem in $problems) {
            $Host.UI.WriteErrorLine("PREFLIGHT: $problem")
        }
        Stop-Bundle $ExitPreflight 'a check before any change failed (above). Nothing was changed.'
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

function Install-BundleFiles {
    # The launcher, the server's settings and the guard: the bytes checked against SHA256SUMS. The
    # running launchers and servers are stopped first: cmd.exe reads a batch file while it runs it.
    $bundle = $Run.Files
    $stale = @($InstalledFiles | Where-Object {
        $target = Join-Path $InstallDir $_
        -not (Test-Path -LiteralPath $target -PathType Leaf) -or
            -not [string]::Equals((Get-FileHash -LiteralPath $target -Algorithm SHA256).Hash, (Get-Sha256 $bundle[$_]), [StringComparison]::OrdinalIgnoreCase)
    })
    if (@($stale | Where-Object { Test-Path -LiteralPath (Join-Path $InstallDir $_) }).Count -gt 0) {
        Stop-BundleProcess -Process @(Get-BundleProcess) -Reason 'before their files are replaced'
    }
    foreach ($file in $InstalledFiles) {
        $target = Join-Path $InstallDir $file
        if ($stale -notcontains $file) {
            Write-Output "files: $target is already in place"
        } elseif (Confirm-Change -Kind 'file' -Target $target -Action "Write $file, the bytes checked against SHA256SUMS (the file takes the install folder's ACL: administrators write, users read and run)" -Undo 'uninstall.ps1 deletes the install folder') {
            [void][IO.Directory]::CreateDirectory($InstallDir)
            [IO.File]::WriteAllBytes($target, $bundle[$file])  # the bytes checked against SHA256SUMS
            Write-Output "files: wrote $file to $target"
            $Run.Changed += "file $target"
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
    # %ProgramData%\jupyter, owned by administrators, made before any user can make it.
    if (-not $Run.CreateJupyterShared) {
        Write-Output "jupyter: $JupyterShared is there, and only administrators can change it"
        return
    }
    $acl = Format-FolderSecurity (New-AdminOnlySecurity -UsersRead)
    if (Confirm-Change -Kind 'jupyter-folder' -Target $JupyterShared -Action 'Create the folder, empty' -Acl $acl -Undo 'uninstall.ps1 deletes it when it is empty (the receipt says install.ps1 made it)') {
        New-AdminOnlyFolder -Path $JupyterShared -UsersRead
        $problem = Get-AdminOnlyProblem $JupyterShared
        if ($problem) {
            throw "${problem}: someone made it between the preflight and now; check what is in it, then remove it"
        }
        Write-Output "jupyter: created $JupyterShared (administrators write, users read)"
        $Run.Changed += "folder $JupyterShared"
        $Run.JupyterCreated = $true
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
    $current = (Get-ReceiptValue $Run.OldReceipt 'sha256sums') -eq $sums
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
            startMenu   = $ShortcutPath
            jupyterShared = $JupyterShared
            jupyterSharedCreated = $Run.JupyterCreated
            engine      = Join-Path $StateDir $EngineFile
            changedNow  = $Run.Changed
        }
        [IO.File]::WriteAllText($ReceiptPath, ($receipt | ConvertTo-Json -Depth 4), (New-Object Text.UTF8Encoding($false)))
        Write-Output "receipt: $ReceiptPath"
    }
}

function Start-BundleServer {
    # For whoever is logged on: start the task unless a server answers, and check that it answers
    # (exit 5 with the end of the user's launcher.log when it does not). Nobody logged on: the
    # server starts at the next logon. -WhatIf sends no request.
    $users = @(Get-InteractiveUser)
    if ($BundleScope -eq 'user') {
        $users = @($users | Where-Object { [string]::Equals($_.Name, $TaskUser, [StringComparison]::OrdinalIgnoreCase) })
    }
    $names = @($users | ForEach-Object { $_.Name }) -join ', '
    if ($users.Count -eq 0) {
        if ($BundleScope -eq 'machine') {
            Write-Output 'server: nobody is logged on; the server starts at the next logon'
        } else {
            Write-Output "server: $TaskUser is not logged on; the server starts at their next logon"
        }
        return
    }
    if ($WhatIfPreference) {
        Write-Output "server: would ask http://${BundleName}:$BundlePort/api whether the server answers, start the task for $names when it does not, and wait up to $ProbeSeconds s; -WhatIf sends no request"
        return
    }
    if (Test-ServerAnswer -Seconds 1) {
        Write-Output "server: http://${BundleName}:$BundlePort/ already answers"
        return
    }
    if (@(Get-BundleProcess).Count -gt 0) {
        Write-Output "server: a launcher already runs; waiting up to $ProbeSeconds s for http://${BundleName}:$BundlePort/api"
    } elseif (Confirm-Change -Kind 'task-start' -Target "$TaskFolder$TaskName" -Action "Start the task for $names" -Undo 'the server ends at logoff, or when uninstall.ps1 stops it') {
        Start-ScheduledTask -TaskName $TaskName -TaskPath $TaskFolder
    } else {
        return
    }
    if (Test-ServerAnswer -Seconds $ProbeSeconds) {
        Write-Output "server: http://${BundleName}:$BundlePort/api answers"
        return
    }
    Write-ServerReport -User $users
    Stop-Bundle $ExitNoAnswer "installed, but http://${BundleName}:$BundlePort/api did not answer within $ProbeSeconds s for ${names}: the launcher's log is above."
}

function Stop-BundleRun {
    # At the end of every run, however it ends: the plan written (-Plan), the log closed, the lock
    # released - in a console the process, whose end would release it, outlives the run, and the
    # next run (Group Policy, Intune) would wait for it and fail.
    param([string]$PlanPath)
    try {
        Write-BundlePlan -Path $PlanPath
    } finally {
        if ($Run.ContainsKey('Transcript') -and $Run.Transcript) {
            Stop-Transcript | Out-Null
        }
        if ($script:Lock) {
            $script:Lock.ReleaseMutex()
            $script:Lock.Dispose()
            $script:Lock = $null
        }
    }
}
