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
