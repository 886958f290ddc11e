# ---- probe: does the server answer for the user who is logged on, and if not, why ----

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

function Write-ServerReport {
    # Why the server did not answer, as far as this script can see: each user's launcher log.
    param([object[]]$User)
    foreach ($account in $User) {
        $name = $account.Name
        $log = Get-LauncherLog -Sid $account.Sid
        if ($null -eq $log) {
            Write-Output "server: the profile of $name was not found; look at their %USERPROFILE%\$UserStateDir\$LauncherLogFile"
        } elseif (-not (Test-Path -LiteralPath $log -PathType Leaf)) {
            Write-Output "server: $log does not exist: the task did not start the launcher for $name. Look at the task's last run result (Get-ScheduledTaskInfo -TaskPath '$TaskFolder' -TaskName '$TaskName') and its history (Event Viewer: Microsoft-Windows-TaskScheduler/Operational)."
        } else {
            Write-Output "server: the last lines of $log :"
            foreach ($line in @(Get-Content -LiteralPath $log -Tail $LogTailLines -Encoding UTF8)) {  # the launcher writes UTF-8; 5.1 would read ANSI
                Write-Output "    $line"
            }
            Write-Output "server: look at the ERROR lines above and their Fix; the server's own output is $ServerLogFile beside that file."
        }
    }
}

function Test-ServerAnswer {
    # GET http://NAME:PORT/api until it answers 200 or $Seconds have passed.
    param([int]$Seconds)
    $url = "http://${BundleName}:$BundlePort/api"
    $deadline = (Get-Date).AddSeconds($Seconds)
    do {
        try {
            $request = [Net.WebRequest]::Create($url)
            $request.Proxy = $null
            $request.Timeout = 2000
            $response = $request.GetResponse()
            $status = [int]$response.StatusCode
            $response.Close()
            if ($status -eq 200) {
                return $true
            }
        } catch {
            Start-Sleep -Milliseconds 500
        }
    } while ((Get-Date) -lt $deadline)
    return $false
}
