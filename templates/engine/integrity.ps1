# ---- integrity: the bundle's files against SHA256SUMS, read once ----

function Get-Sha256 {
    param([byte[]]$Bytes)
    $sha = [Security.Cryptography.SHA256]::Create()
    try {
        return ([BitConverter]::ToString($sha.ComputeHash($Bytes)) -replace '-', '').ToLowerInvariant()
    } finally {
        $sha.Dispose()
    }
}

function Read-VerifiedBundle {
    # The reviewer approved these exact bytes. Each file is read once, into memory, and
    # checked there; the script uses only these bytes afterwards, never the files again, so
    # a share that changes after the check cannot hand it other bytes. With -SumsSha256 the
    # SHA-256 of SHA256SUMS itself must be the one the deployment names outside the bundle.
    # -InPlace names files whose bytes are already installed, by their SHA-256 (the bundle's
    # environment, extracted and marked with it): when SHA256SUMS lists that same SHA-256,
    # such a file is not read again (57 MB from SYSVOL at every boot), only found there.
    # -Optional (detect.ps1): with no SHA256SUMS beside the script and no pin, there is nothing
    # to check against (Intune runs a detection script alone, without its bundle), and it
    # returns $null. A bundle that is not the one approved throws SecurityException.
    param([string]$PinnedSums, [switch]$Optional, [hashtable]$InPlace = @{})
    $sumsPath = Join-Path $BundleRoot $SumsFile
    if (-not (Test-Path -LiteralPath $sumsPath -PathType Leaf)) {
        if ($Optional -and -not $PinnedSums) {
            return $null
        }
        throw [Security.SecurityException]::new("SHA256SUMS is missing beside $ScriptName.")
    }
    $sumsBytes = [IO.File]::ReadAllBytes($sumsPath)
    $sumsSha = Get-Sha256 $sumsBytes
    if ($PinnedSums -and -not [string]::Equals($sumsSha, $PinnedSums.Trim(), [StringComparison]::OrdinalIgnoreCase)) {
        throw [Security.SecurityException]::new("SHA256SUMS has SHA-256 $sumsSha, not $($PinnedSums.Trim()) as -SumsSha256 says: the bundle is not the one approved.")
    }
    $expected = @{}
    foreach ($line in ($Latin1.GetString($sumsBytes) -split "`n")) {
        $line = $line.TrimEnd([char]13)
        if ($line.Length -eq 0) {
            continue
        }
        if ($line -cnotmatch '^([0-9a-f]{64})  (\S+)$') {
            throw [Security.SecurityException]::new("SHA256SUMS has a line that is not '<sha256>  <file>': '$line'.")
        }
        $expected[$Matches[2]] = $Matches[1]
    }
    $bundle = @{ $SumsFile = $sumsBytes }
    foreach ($file in $BundleFiles) {
        $path = Join-Path $BundleRoot $file
        if (-not $expected.ContainsKey($file) -or -not (Test-Path -LiteralPath $path -PathType Leaf)) {
            throw [Security.SecurityException]::new("$file is missing from the bundle or from SHA256SUMS.")
        }
        if ($InPlace.ContainsKey($file) -and [string]::Equals($InPlace[$file], $expected[$file], [StringComparison]::Ordinal)) {
            $bundle[$file] = $null  # installed from bytes with this SHA-256; not needed again
            continue
        }
        $bytes = [IO.File]::ReadAllBytes($path)
        if (-not [string]::Equals((Get-Sha256 $bytes), $expected[$file], [StringComparison]::Ordinal)) {
            throw [Security.SecurityException]::new("$file does not match SHA256SUMS: the bundle changed after review.")
        }
        $bundle[$file] = $bytes
    }
    return $bundle
}
