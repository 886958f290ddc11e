# ---- run log: a transcript of each run under the state folder, the newest $KeepLogs kept ----

function Start-RunLog {
    # Returns $true once the transcript runs; the caller stops it in its finally block.
    param([string]$Script)
    Protect-StateDirectory
    [void][IO.Directory]::CreateDirectory($StateLogDir)
    Get-ChildItem -LiteralPath $StateLogDir -Filter "$Script-*.log" | Sort-Object Name -Descending | Select-Object -Skip ($KeepLogs - 1) | Remove-Item -Force -ErrorAction SilentlyContinue
    Start-Transcript -LiteralPath (Join-Path $StateLogDir ($Script + '-' + (Get-Date -Format 'yyyyMMdd-HHmmss') + '.log')) -Append | Out-Null
    return $true
}
