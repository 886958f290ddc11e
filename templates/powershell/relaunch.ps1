# In 32-bit PowerShell on 64-bit Windows (Intune's default), %ProgramFiles% is another folder: run
# again in the 64-bit one of the same edition where there is one, not under 'Stop' (5.1 would turn
# the child's error lines into errors). A value is forwarded on a command line, where an empty one
# would vanish, and a '"', or a '\' ending a value that holds a space, would change the next: an
# empty value means "not given" here and is left out; the others are refused, naming the line to run.
if ([Environment]::Is64BitOperatingSystem -and -not [Environment]::Is64BitProcess) {
    $nativePowerShell = Join-Path $env:SystemRoot 'Sysnative\WindowsPowerShell\v1.0\powershell.exe'
    if ($PSVersionTable.PSEdition -eq 'Core' -and $env:ProgramW6432 -and (Test-Path -LiteralPath (Join-Path $env:ProgramW6432 'PowerShell\7\pwsh.exe'))) {
        $nativePowerShell = Join-Path $env:ProgramW6432 'PowerShell\7\pwsh.exe'
    }
    $forward = @()
    foreach ($parameter in $PSBoundParameters.GetEnumerator()) {
        if ($parameter.Value -is [switch]) {
            if ($parameter.Value.IsPresent) { $forward += '-' + $parameter.Key }
        } elseif ([string]$parameter.Value -match '"|^(?=.*\s).*\\$') {
            $Host.UI.WriteErrorLine("ERROR: -$($parameter.Key) holds a '`"', or a space and a '\' at its end, which a 32-bit PowerShell cannot hand to the 64-bit one. Run $nativePowerShell -File $PSCommandPath instead. Nothing was changed.")
            exit 1603
        } elseif ([string]$parameter.Value) {
            $forward += '-' + $parameter.Key
            $forward += [string]$parameter.Value
        }
    }
    $ErrorActionPreference = 'Continue'
    & $nativePowerShell -NoProfile -ExecutionPolicy Bypass -File $PSCommandPath @forward
    exit $LASTEXITCODE
}
