# ---- processes: the launchers and servers of this bundle, found by their command lines ----

function Test-ServerCommandLine {
    # True for the command line of this bundle's notebook server, as the launcher builds it.
    param([string]$CommandLine)
    $line = $CommandLine + ' '
    foreach ($mark in @(' -m notebook ', " --ServerApp.ip=$BundleIp ", " --ServerApp.port=$BundlePort ")) {
        if (-not $line.Contains($mark)) {
            return $false
        }
    }
    return $true
}

function Test-LauncherCommandLine {
    # True for conhost.exe and cmd.exe running this bundle's launcher: the task names it
    # relative to the install folder (its command line ends in ' /c .\<launcher>'), and
    # an earlier version named it by its full path.
    param([string]$CommandLine)
    $line = $CommandLine.TrimEnd()
    return $line.EndsWith(' /c .\' + $LauncherFile, [StringComparison]::OrdinalIgnoreCase) -or
        $line.IndexOf((Join-Path $InstallDir $LauncherFile), [StringComparison]::OrdinalIgnoreCase) -ge 0
}

function Get-BundleProcess {
    # The launchers (conhost.exe and cmd.exe running the installed .bat) first,
    # so that none starts a new server, then the servers.
    # The programs a launcher runs (ping.exe while it waits, the guard) inherit its lock on
    # launcher.lock: they are stopped with it, or a new launcher would wait for them.
    $all = @(Get-CimInstance -ClassName Win32_Process | Where-Object { $null -ne $_.CommandLine })
    $launchers = @($all | Where-Object { @('cmd.exe', 'conhost.exe') -contains $_.Name -and (Test-LauncherCommandLine $_.CommandLine) })
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
        (@('ping.exe', 'find.exe') -contains $_.Name -or
            ($_.Name -eq 'python.exe' -and $_.CommandLine.IndexOf($GuardFile, [StringComparison]::OrdinalIgnoreCase) -ge 0))
    })
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
        Write-Output 'process: no launcher or server is running'
        return
    }
    $list = @($Process | ForEach-Object { "$($_.Name) $($_.ProcessId) ($(Get-ProcessOwner $_))" }) -join ', '
    if (Confirm-Change -Kind 'process-stop' -Target "$($Process.Count) launcher and server processes" -Action "Stop $list, $Reason" -Undo 'none needed: the task starts them again at the next logon') {
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
