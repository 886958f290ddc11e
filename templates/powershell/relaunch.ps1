# In 32-bit PowerShell on 64-bit Windows (Intune's default), %ProgramFiles% is another folder: run
# again in the 64-bit one, not under 'Stop' (5.1 would turn the child's error lines into errors).
if ([Environment]::Is64BitOperatingSystem -and -not [Environment]::Is64BitProcess) {
    $nativePowerShell = Join-Path $env:SystemRoot 'Sysnative\WindowsPowerShell\v1.0\powershell.exe'
    $forward = @($PSBoundParameters.GetEnumerator() | ForEach-Object { if ($_.Value -isnot [switch]) { '-' + $_.Key; [string]$_.Value } elseif ($_.Value.IsPresent) { '-' + $_.Key } })
    $ErrorActionPreference = 'Continue'
    & $nativePowerShell -NoProfile -ExecutionPolicy Bypass -File $PSCommandPath @forward
    exit $LASTEXITCODE
}
