# ---- preflight: what stands in the way, found before any change ----

function Get-HostsMapping {
    # Lines outside our block that map our name: exact names, never substrings.
    param([string]$Text)
    $rest = Set-HostsBlock -Text $Text -Block @()
    foreach ($line in ($rest -split "`r?`n")) {
        $data = ($line -split '#', 2)[0].Trim()
        if ($data.Length -eq 0) {
            continue
        }
        $fields = @($data -split '\s+')
        for ($i = 1; $i -lt $fields.Count; $i++) {
            if ($fields[$i] -ieq $BundleName) {
                [pscustomobject]@{ Address = $fields[0]; Line = $line }
                break
            }
        }
    }
}

function Get-PortProblem {
    # Why the server could not listen on $BundleIp:$BundlePort, if anything stands in its way.
    $listeners = @(Get-NetTCPConnection -State Listen -LocalPort $BundlePort -ErrorAction SilentlyContinue |
        Where-Object { @($BundleIp, '0.0.0.0') -contains $_.LocalAddress })
    foreach ($listener in $listeners) {
        $owner = Get-CimInstance -ClassName Win32_Process -Filter "ProcessId = $($listener.OwningProcess)" -ErrorAction SilentlyContinue
        if ($owner -and $owner.Name -eq 'python.exe' -and (Test-ServerCommandLine ([string]$owner.CommandLine))) {
            continue  # this bundle's own server, from an earlier install
        }
        if ($owner -and $owner.Name -eq 'python.exe' -and $null -eq $owner.CommandLine -and -not $elevated) {
            Write-Warning "python.exe (process $($listener.OwningProcess)) listens on $($listener.LocalAddress):$BundlePort; not elevated, so it cannot be told from this bundle's own server"
            continue
        }
        if ($listener.OwningProcess -eq 4) {
            "HTTP.sys (the System process) listens on $($listener.LocalAddress):$BundlePort for IIS or another service; see: netsh http show servicestate"
        } elseif ($owner) {
            "$($owner.Name) (process $($listener.OwningProcess)) listens on $($listener.LocalAddress):$BundlePort"
        } else {
            "process $($listener.OwningProcess) listens on $($listener.LocalAddress):$BundlePort"
        }
    }
    $ErrorActionPreference = 'Continue'  # Windows PowerShell 5.1 turns a native command's stderr into an error
    $ranges = @(& "$env:SystemRoot\System32\netsh.exe" int ipv4 show excludedportrange protocol=tcp 2>$null)
    $ErrorActionPreference = 'Stop'
    foreach ($line in $ranges) {
        if ($line -match '^\s*(\d+)\s+(\d+)') {
            if ($BundlePort -ge [int]$Matches[1] -and $BundlePort -le [int]$Matches[2]) {
                "port $BundlePort is in an excluded port range ($($Matches[1])-$($Matches[2]), often reserved by Hyper-V or WSL); see: netsh int ipv4 show excludedportrange protocol=tcp"
            }
        }
    }
}
