# ---- environment-remove: deleting the bundle's Python environments, each whole or not at all ----

function Get-EnvironmentFolder {
    # This bundle's environment folders in the install folder, whichever lock made them:
    # env-<12 hex>, and what an interrupted run left (.env-<12 hex>.partial or .remove; and
    # .env-<12 hex>.partial.remove, which gen-bundle before 0.3.1 made of a staging folder).
    if (-not (Test-Path -LiteralPath $InstallDir -PathType Container)) {
        return @()
    }
    return @(Get-ChildItem -LiteralPath $InstallDir -Directory -Force | Where-Object {
        $_.Name -cmatch '^(env-[0-9a-f]{12}|\.env-[0-9a-f]{12}\.(partial|remove|partial\.remove))$'
    } | ForEach-Object { $_.FullName })
}

function Get-EnvironmentUser {
    # The processes that run a program from the environment folder $Path (a server, a kernel, the broker).
    param([string]$Path)
    return @(Get-CimInstance -ClassName Win32_Process | Where-Object {
        $null -ne $_.ExecutablePath -and $_.ExecutablePath.StartsWith($Path + '\', [StringComparison]::OrdinalIgnoreCase)
    })
}

function Remove-EnvironmentFolder {
    # An environment goes whole or not at all: it is first renamed, which Windows refuses while
    # any process runs a program from it or holds one of its files open (a server, a kernel);
    # only a folder that nothing uses is then deleted. Returns $false when it is in use.
    param([string]$Path)
    if (@(Get-EnvironmentUser -Path $Path).Count -gt 0) {
        return $false
    }
    $leaf = Split-Path -Leaf $Path
    $retired = $Path
    if (-not $leaf.EndsWith('.remove', [StringComparison]::Ordinal)) {
        # A staging folder too retires as .env-<12 hex>.remove: a name Get-EnvironmentFolder finds
        # again, and no longer than the staging name, the longest the environment's files get.
        $retired = Join-Path $InstallDir ('.' + $leaf.TrimStart('.').Replace('.partial', '') + '.remove')
        if (Test-Path -LiteralPath $retired) {
            Remove-Item -LiteralPath $retired -Recurse -Force
        }
        try {
            [IO.Directory]::Move($Path, $retired)
        } catch {
            return $false
        }
    }
    try {
        Remove-Item -LiteralPath $retired -Recurse -Force
    } catch {
        Write-Warning "environment: $retired could not be deleted yet ($($_.Exception.Message)); the next run deletes it"
        return $false
    }
    return $true
}
