# ---- base: elevation, and one run at a time ----

function Test-Elevated {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Confirm-Elevated {
    # Changes need an elevated prompt; -WhatIf only looks, and runs without one. The answer is
    # kept ($elevated): some checks can be made only elevated, and say so otherwise.
    param([string]$Script)
    $elevated = Test-Elevated
    $script:elevated = $elevated
    if (-not $elevated -and -not $WhatIfPreference) {
        Stop-Bundle $ExitNotAdmin "$Script must run elevated (Run as administrator, or as a computer startup script). Nothing was changed."
    }
    if (-not $elevated) {
        Write-Warning "Not elevated: this shows what would change; $Script itself needs an elevated prompt."
    }
    return $elevated
}

function Lock-Bundle {
    # One run of this bundle's install.ps1 or uninstall.ps1 at a time on this machine (a
    # Group Policy startup script, Intune and an administrator may overlap): the next one
    # waits. Stop-BundleRun releases the lock at the end of the run; Windows, when the process
    # ends, however it ends.
    param([int]$Seconds)
    try {
        $mutex = New-Object Threading.Mutex($false, "Global\gen-bundle-$BundleName")
    } catch [UnauthorizedAccessException] {
        # A run as SYSTEM (Group Policy, Intune) made the lock, which an administrator's run may
        # only wait on with rights SYSTEM's default does not give it.
        Stop-Bundle $ExitFailure "another run of install.ps1 or uninstall.ps1 for '$BundleName' (as SYSTEM) holds the lock; run this again when it has ended. Nothing was changed."
    }
    try {
        if (-not $mutex.WaitOne([TimeSpan]::FromSeconds($Seconds))) {
            Stop-Bundle $ExitFailure "another run of install.ps1 or uninstall.ps1 for '$BundleName' still runs after $Seconds s. Nothing was changed."
        }
    } catch [Threading.AbandonedMutexException] {
        Write-Verbose 'an earlier run ended without releasing the lock; this run holds it now'
    }
    return $mutex
}
