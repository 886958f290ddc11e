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
