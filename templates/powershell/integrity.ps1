# ---- integrity: the bundle's files against SHA256SUMS ----

function Test-BundleIntegrity {
    # The reviewer approved these exact bytes; refuse anything else.
    $sumsPath = Join-Path $PSScriptRoot 'SHA256SUMS'
    if (-not (Test-Path -LiteralPath $sumsPath -PathType Leaf)) {
        Stop-Bundle $ExitTampered 'SHA256SUMS is missing beside install.ps1. Nothing was changed.'
    }
    $expected = @{}
    foreach ($line in [IO.File]::ReadAllLines($sumsPath)) {
        if ($line -cnotmatch '^([0-9a-f]{64})  (\S+)$') {
            Stop-Bundle $ExitTampered "SHA256SUMS has a line that is not '<sha256>  <file>': '$line'. Nothing was changed."
        }
        $expected[$Matches[2]] = $Matches[1]
    }
    foreach ($file in $BundleFiles) {
        $path = Join-Path $PSScriptRoot $file
        if (-not $expected.ContainsKey($file) -or -not (Test-Path -LiteralPath $path -PathType Leaf)) {
            Stop-Bundle $ExitTampered "$file is missing from the bundle or from SHA256SUMS. Nothing was changed."
        }
        $actual = (Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash.ToLowerInvariant()
        if ($actual -cne $expected[$file]) {
            Stop-Bundle $ExitTampered "$file does not match SHA256SUMS: the bundle changed after review. Nothing was changed."
        }
    }
}
