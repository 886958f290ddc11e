# ---- hosts, read: the hosts file's bytes as text, whatever its encoding ----
# Windows reads hosts from the folder the DataBasePath value names (REG_EXPAND_SZ; Registry.GetValue
# expands it), %SystemRoot%\System32\drivers\etc unless an administrator moved it. A value that is
# not there gives '' (a property read of a silenced Get-ItemProperty's $null throws under StrictMode).
$HostsFolder = [string][Microsoft.Win32.Registry]::GetValue('HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters', 'DataBasePath', '')
if ([string]::IsNullOrEmpty($HostsFolder)) {
    $HostsFolder = Join-Path $env:SystemRoot 'System32\drivers\etc'
}
$HostsPath = Join-Path $HostsFolder 'hosts'
# A hosts file that gen-bundle cannot edit throws InvalidDataException: before any change the
# scripts exit with $ExitPreflight, detect.ps1 reports "not installed".
# Latin-1 maps every byte to one character and back, so the hosts file's bytes
# outside our block (any encoding, BOM, line endings) are written back unchanged.
$Latin1 = [Text.Encoding]::GetEncoding(28591)

function Read-HostsText {
    if (-not (Test-Path -LiteralPath $HostsPath -PathType Leaf)) {
        return ''
    }
    $bytes = [IO.File]::ReadAllBytes($HostsPath)
    if ($bytes.Length -ge 2 -and (($bytes[0] -eq 0xFF -and $bytes[1] -eq 0xFE) -or ($bytes[0] -eq 0xFE -and $bytes[1] -eq 0xFF))) {
        throw [IO.InvalidDataException]::new("$HostsPath is UTF-16; gen-bundle edits only byte-oriented hosts files")
    }
    return $Latin1.GetString($bytes)
}
