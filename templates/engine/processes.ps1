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
