# ---- run log: a transcript of each run in $StateLogDir, the newest $KeepLogs of each script kept ----

function Get-OldRunLog {
    # The logs of this script's earlier runs that the next one pushes past the newest $KeepLogs
    # (none when the folder is not there, or cannot be read without elevation).
    param([string]$Script)
    try {
        return @(Get-ChildItem -LiteralPath $StateLogDir -Filter "$Script-*.log" -ErrorAction Stop |
            Sort-Object Name -Descending | Select-Object -Skip ($KeepLogs - 1))
    } catch {
        return @()
    }
}

function Start-BundleLog {
    # The log of this run, in the state folder (after New-StateFolder: only SYSTEM and
    # administrators can have put files there), the older ones past the newest $KeepLogs deleted.
    # Sets $Run.Transcript once the transcript runs: Stop-BundleRun stops it.
    param([string]$Script)
    $old = @(Get-OldRunLog -Script $Script)
    $action = 'Write the log of this run there'
    if ($old.Count -gt 0) {
        $action += ", and delete the older logs past the newest ${KeepLogs}: $(@($old | ForEach-Object { $_.Name }) -join ', ')"
    }
    # install.ps1 -WhatIf on a PC where the folder is not there yet shows the log too: a real run
    # makes the folder and writes it (uninstall.ps1 makes no folder).
    if (((Test-Entry $StateLogDir) -or ($WhatIfPreference -and $Script -eq 'install')) -and (Confirm-Change -Kind 'log' -Target $StateLogDir -Action $action -Undo 'stays: the logs of the runs, for the record')) {
        $old | Remove-Item -Force -ErrorAction SilentlyContinue
        try {
            Start-Transcript -LiteralPath (Join-Path $StateLogDir ($Script + '-' + (Get-Date -Format 'yyyyMMdd-HHmmss') + '.log')) -Append | Out-Null
            $Run.Transcript = $true
        } catch {
            Write-Warning "log: this run writes no log ($($_.Exception.Message))"  # a full disk must not fail the run
        }
    }
}
