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
