# ---- native: run in 64-bit PowerShell ----
# 32-bit PowerShell on 64-bit Windows (Intune's and some SCCM agents' default) sees
# %ProgramFiles% as "Program Files (x86)"; run again in the 64-bit PowerShell instead.
if ([Environment]::Is64BitOperatingSystem -and -not [Environment]::Is64BitProcess) {
    $nativePowerShell = Join-Path $env:SystemRoot 'Sysnative\WindowsPowerShell\v1.0\powershell.exe'
    $forward = @('-NoProfile', '-ExecutionPolicy', 'Bypass', '-File', $PSCommandPath)
    foreach ($entry in $PSBoundParameters.GetEnumerator()) {
        if ($entry.Value -is [System.Management.Automation.SwitchParameter]) {
            if ($entry.Value.IsPresent) {
                $forward += '-' + $entry.Key
            }
        } else {
            $forward += @('-' + $entry.Key, [string]$entry.Value)
        }
    }
    # Not under 'Stop': when the host redirects its error stream, Windows PowerShell 5.1 turns each
    # line the child writes there into an error record, and 'Stop' would end this script with
    # the trap's 1603 instead of the child's own exit code.
    $ErrorActionPreference = 'Continue'
    & $nativePowerShell @forward
    exit $LASTEXITCODE
}
