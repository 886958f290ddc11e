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
            if ([string]::Equals($fields[$i], $BundleName, [StringComparison]::OrdinalIgnoreCase)) {
                [pscustomobject]@{ Address = $fields[0]; Line = $line }
                break
            }
        }
    }
}

function Get-PortProblem {
    # Why the broker could not hold $BundleIp:$BundlePort, if anything but this bundle's broker holds it.
    $listeners = @(Get-NetTCPConnection -State Listen -LocalPort $BundlePort -ErrorAction SilentlyContinue |
        Where-Object { @($BundleIp, '0.0.0.0', '::', "::ffff:$BundleIp") -contains $_.LocalAddress })
    # While this bundle's broker holds the address itself, another listener on 0.0.0.0 or [::] (which
    # Windows lets any account make beside it) takes none of its connections: a warning, not a
    # refusal any user could cause at every run. It matters at the broker's next start (event 101),
    # and so it stays a refusal when this run would stop the broker: to extract again a damaged
    # environment it runs from (one of a new lock is a new folder, and stops nothing).
    $repair = $EnvFolder -and -not $Run.InPlace -and (Test-Entry (Join-Path $InstallDir $EnvFolder))
    $held = -not $repair -and @($listeners | Where-Object { $_.LocalAddress -eq $BundleIp -and (Test-OurBroker -ProcessId $_.OwningProcess) }).Count -gt 0
    foreach ($listener in $listeners) {
        $owner = Get-CimInstance -ClassName Win32_Process -Filter "ProcessId = $($listener.OwningProcess)" -ErrorAction SilentlyContinue
        if (-not $owner -and (Test-BrokerRunning)) {
            continue  # a listener whose process has ended, while the broker's task runs: the supervisor's row (its worker lives on)
        }
        if (Test-OurBroker -ProcessId $listener.OwningProcess) {
            continue  # this bundle's broker: python.exe running its file as LOCAL SERVICE
        }
        if ($owner -and $owner.Name -eq 'python.exe' -and (Test-ServerCommandLine ([string]$owner.CommandLine))) {
            continue  # a server of an earlier version's launcher, stopped when its files are replaced; were it a
            # user's look-alike, the broker could not bind, and the probe would find no broker (exit 5)
        }
        if ($owner -and $owner.Name -eq 'python.exe' -and $null -eq $owner.CommandLine -and -not $elevated) {
            Write-Warning "python.exe (process $($listener.OwningProcess)) listens on $($listener.LocalAddress):$BundlePort; not elevated, so it cannot be told from this bundle's broker"
            continue
        }
        if ($listener.OwningProcess -eq 4) {
            $problem = "HTTP.sys (the System process) listens on $($listener.LocalAddress):$BundlePort for IIS or another HTTP.sys listener (one with an empty IP listen list takes every address); see: netsh http show servicestate"
        } elseif ($owner) {
            $problem = "$($owner.Name) (process $($listener.OwningProcess)) listens on $($listener.LocalAddress):$BundlePort"
        } else {
            $problem = "process $($listener.OwningProcess) listens on $($listener.LocalAddress):$BundlePort"
        }
        if ($held -and @('0.0.0.0', '::') -contains $listener.LocalAddress) {
            Write-Warning "$problem, beside this bundle's broker, which holds ${BundleIp}:${BundlePort}: at the broker's next start it could keep the address from it (event 101 in $BrokerLog)"
        } else {
            $problem
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
    if ($BundlePort -eq 80) {
        # Windows reserves this URL for Everyone: any account may have HTTP.sys listen on port 80 of every
        # address through it, and one that does so before the broker starts keeps the address from it.
        # netsh prints the URL only when the reservation is there, in every language.
        $url = 'http://+:80/Temporary_Listen_Addresses/'
        $ErrorActionPreference = 'Continue'
        $reservation = @(& "$env:SystemRoot\System32\netsh.exe" http show urlacl "url=$url" 2>$null) -join "`n"
        $ErrorActionPreference = 'Stop'
        if ($reservation.IndexOf($url, [StringComparison]::OrdinalIgnoreCase) -ge 0) {
            Write-Warning "HTTP.sys reserves $url for every account (Windows' default): any user can make HTTP.sys listen on port 80, and before the broker starts at boot that would keep ${BundleIp}:80 from it (event 101 in $BrokerLog). Unless a program here needs it, IT removes it: netsh http delete urlacl url=$url"
        }
    }
}

function Get-BrokerLogProblem {
    # The broker's log folder, when it is there: a real folder that only administrators and SYSTEM
    # own and change, but for the broker's task SID, which must be able to write its log there.
    try {
        if (-not (Test-Entry $BrokerLogDir)) {
            return
        }
        $problem = Get-AdminOnlyProblem -Path $BrokerLogDir -Writer $BrokerTaskSid
        $modify = [int64][System.Security.AccessControl.FileSystemRights]'Modify'
        $granted = @((Get-Acl -LiteralPath $BrokerLogDir).GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier]) | Where-Object {
            $_.IdentityReference.Value -eq $BrokerTaskSid -and $_.AccessControlType -eq 'Allow' -and ([int64]$_.FileSystemRights -band $modify) -eq $modify
        }).Count -gt 0
    } catch [UnauthorizedAccessException] {
        if ($elevated) {
            throw
        }
        Write-Warning "broker: $BrokerLogDir can be read by administrators only; run elevated to have it checked"
        return
    }
    if ($problem) {
        "$problem, and the broker and install.ps1 read and write there: look at what is in it, then remove it"
    } elseif (-not $granted) {
        "$BrokerLogDir does not let the broker's task ($BrokerTaskSid) write its log: icacls `"$BrokerLogDir`" /grant *${BrokerTaskSid}:(OI)(CI)M, or remove the folder"
    }
}

function Test-UsersRead {
    # True when BUILTIN\Users (or Authenticated Users, Everyone, INTERACTIVE) may list $Path and
    # read and run what is in it, and none of them is denied that: the logon task and the
    # Start-menu entry run the launcher below $InstallRoot as each user.
    param([string]$Path)
    $readers = @('S-1-5-32-545', 'S-1-5-11', 'S-1-1-0', 'S-1-5-4')
    $need = [int64][System.Security.AccessControl.FileSystemRights]'ReadAndExecute'
    $allowed = $false
    foreach ($rule in (Get-Acl -LiteralPath $Path).GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
        $rights = [int64]$rule.FileSystemRights
        if (($rights -band 0x10000000) -ne 0 -or ($rights -band 0xA0000000) -eq 0xA0000000) {
            $rights = $rights -bor $need  # GENERIC_ALL, or GENERIC_READ with GENERIC_EXECUTE
        }
        if ($readers -notcontains $rule.IdentityReference.Value -or ($rule.PropagationFlags -band [System.Security.AccessControl.PropagationFlags]::InheritOnly)) {
            continue
        }
        if ($rule.AccessControlType -eq 'Deny' -and ($rights -band $need) -ne 0) {
            return $false
        }
        if ($rule.AccessControlType -eq 'Allow' -and ($rights -band $need) -eq $need) {
            $allowed = $true
        }
    }
    return $allowed
}

function Get-JupyterCoreVersion {
    # The version of jupyter_core installed for $PythonExe (a base install, or a virtual
    # environment's Scripts\python.exe), read from its dist-info METADATA: no Python runs.
    $pythonFolder = Split-Path -Parent $PythonExe
    foreach ($sitePackages in @((Join-Path $pythonFolder 'Lib\site-packages'), (Join-Path (Split-Path -Parent $pythonFolder) 'Lib\site-packages'))) {
        if (-not (Test-Path -LiteralPath $sitePackages -PathType Container)) {
            continue
        }
        foreach ($info in @(Get-ChildItem -LiteralPath $sitePackages -Directory -Filter 'jupyter_core-*.dist-info')) {
            $metadata = Join-Path $info.FullName 'METADATA'
            if (-not (Test-Path -LiteralPath $metadata -PathType Leaf)) {
                continue
            }
            foreach ($line in [IO.File]::ReadAllLines($metadata)) {
                if ($line.Length -eq 0) {
                    break  # the headers end here
                }
                if ($line -cmatch '^Version:\s*(\S+)') {
                    return $Matches[1]
                }
            }
        }
    }
    return $null
}

function Test-VersionBelow {
    # True when $Version (its leading numbers: 5.8.0rc1 reads as 5.8.0) is below $Minimum.
    param([string]$Version, [string]$Minimum)
    $have = @(([regex]::Match($Version, '^[0-9]+(\.[0-9]+)*').Value -split '\.') | ForEach-Object { [int]('0' + $_) })
    $need = @($Minimum -split '\.' | ForEach-Object { [int]$_ })
    for ($i = 0; $i -lt $need.Count; $i++) {
        $part = 0
        if ($i -lt $have.Count) {
            $part = $have[$i]
        }
        if ($part -ne $need[$i]) {
            return $part -lt $need[$i]
        }
    }
    return $false
}

function Get-PythonTreeProblem {
    # What every user's server runs and imports, checked at each run: python.exe's folder
    # (or, for a virtual environment's Scripts\python.exe, the environment's, and the base
    # Python its pyvenv.cfg names), every folder below their Lib, DLLs and Scripts and below
    # share and etc (where Jupyter finds kernels and settings), the programs and DLLs beside
    # python.exe, and every .pth and ._pth file (each line of one can run code at start). Files take their
    # folder's rights, unless an administrator set others: only folders are walked, not
    # the thousands of files in them. Each is judged by its ACL and by its owner, who can
    # always change the ACL (Get-NonAdminWriter), but for -AnyOwner (the bundle's environment,
    # which install.ps1 extracted as whoever ran it, below a folder whose ACL it set at
    # creation: the ACL alone is judged); each is read once. The folders are listed one
    # level at a time: one that cannot be listed or whose rights cannot be read (access
    # denied, or a folder's path of 248 characters or more, which Windows PowerShell 5.1 cannot list) is a
    # problem named with its reason, not the end of the run, and it is not passed as checked;
    # a link is not followed (its target could be anything), and is a problem too.
    param([switch]$AnyOwner, [string]$Python = $PythonExe)
    $folder = Split-Path -Parent $Python
    $base = $folder
    if ([string]::Equals((Split-Path -Leaf $folder), 'Scripts', [StringComparison]::OrdinalIgnoreCase)) {
        $base = Split-Path -Parent $folder
    }
    $roots = @($base)
    $venv = Join-Path $base 'pyvenv.cfg'
    $venvLines = @()
    if (Test-Entry $venv) {  # one that may not be read is named, not skipped
        try {
            $venvLines = [IO.File]::ReadAllLines($venv)
        } catch {
            "$venv (could not be read: $($_.Exception.Message))"
        }
    }
    foreach ($line in $venvLines) {
        if ($line -cmatch '^\s*home\s*=\s*(.+?)\s*$' -and (Test-Entry $Matches[1])) {
            $roots += $Matches[1]
        }
    }
    $paths = New-Object System.Collections.Generic.List[string]
    foreach ($path in @($roots + $folder | Select-Object -Unique)) {
        $paths.Add($path)
    }
    $trees = New-Object System.Collections.Generic.List[string]
    foreach ($root in $roots) {
        foreach ($name in @('Lib', 'DLLs', 'Scripts', 'share', 'etc')) {
            $tree = Join-Path $root $name
            if (Test-Entry $tree) {  # one that may not be listed is named below, not skipped
                $trees.Add($tree)
            }
        }
    }
    for ($i = 0; $i -lt $trees.Count; $i++) {  # $trees grows as each folder is listed
        $tree = $trees[$i]
        try {
            if ([IO.File]::GetAttributes($tree) -band [IO.FileAttributes]::ReparsePoint) {
                "$tree (a link: the Python that every user runs must be real folders)"
                continue
            }
            $paths.Add($tree)
            foreach ($child in [IO.Directory]::GetDirectories($tree)) {
                $trees.Add($child)
            }
        } catch {
            "$tree (could not be listed: $($_.Exception.Message))"
        }
    }
    foreach ($pattern in @('*.exe', '*.dll', '*._pth', '*.pth')) {
        foreach ($file in @(Get-ChildItem -LiteralPath $folder -File -Filter $pattern)) {
            $paths.Add($file.FullName)
        }
    }
    $sitePackages = Join-Path $base 'Lib\site-packages'
    if (Test-Entry $sitePackages) {
        foreach ($file in @(Get-ChildItem -LiteralPath $sitePackages -File -Filter '*.pth')) {
            $paths.Add($file.FullName)
        }
    }
    foreach ($path in $paths) {
        try {
            $writers = @(Get-NonAdminWriter -Path $path -AnyOwner:$AnyOwner)
        } catch {
            "$path (its rights could not be read: $($_.Exception.Message))"
            continue
        }
        if ($writers.Count -gt 0) {
            "$path ($($writers -join ', '))"
        }
    }
}
