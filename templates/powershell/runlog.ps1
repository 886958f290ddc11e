# ---- run log: a transcript of each run in $StateLogDir, the newest $KeepLogs of each script kept ----

function Start-RunLog {
    # After New-StateFolder: only SYSTEM and administrators can have put files there.
    # Returns $true once the transcript runs; the caller stops it in its finally block.
    param([string]$Script)
    Get-ChildItem -LiteralPath $StateLogDir -Filter "$Script-*.log" | Sort-Object Name -Descending | Select-Object -Skip ($KeepLogs - 1) | Remove-Item -Force -ErrorAction SilentlyContinue
    Start-Transcript -LiteralPath (Join-Path $StateLogDir ($Script + '-' + (Get-Date -Format 'yyyyMMdd-HHmmss') + '.log')) -Append | Out-Null
    return $true
}
