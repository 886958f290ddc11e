# ---- base: stopping with a message, elevation ----

function Stop-Bundle {
    param([int]$Code, [string]$Message)
    $Host.UI.WriteErrorLine("ERROR: $Message")
    exit $Code
}

function Test-Elevated {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Confirm-Elevated {
    # Changes need an elevated prompt; -WhatIf only looks, and runs without one.
    param([string]$Script)
    $elevated = Test-Elevated
    if (-not $elevated -and -not $WhatIfPreference) {
        Stop-Bundle $ExitNotAdmin "$Script must run elevated (Run as administrator, or as a computer startup script). Nothing was changed."
    }
    if (-not $elevated) {
        Write-Warning "Not elevated: this shows what would change; $Script itself needs an elevated prompt."
    }
    return $elevated
}
