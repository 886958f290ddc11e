# ---- environment-marker: is the bundle's Python environment in place, whole? ----
$EnvMarkerFile = 'gen-bundle-env.txt'  # in the environment's folder: the archive's SHA-256 and its file count, written last

function Test-EnvironmentInPlace {
    # Complete only when its marker names this archive and the folder still holds as many files
    # as it had when the marker was written (one that an antivirus quarantined, or a half-deleted
    # one, is not): the marker is written last, inside the staging folder, before the one rename
    # that gives the folder its final name.
    $folder = Join-Path $InstallDir $EnvFolder
    $marker = Join-Path $folder $EnvMarkerFile
    if (-not (Test-Path -LiteralPath $marker -PathType Leaf)) {
        return $false
    }
    $fields = [IO.File]::ReadAllText($marker).Trim().Split(' ')
    if ($fields.Count -ne 2 -or -not [string]::Equals($fields[0], $EnvArchiveSha256, [StringComparison]::Ordinal)) {
        return $false
    }
    try {
        $count = [IO.Directory]::GetFiles($folder, '*', [IO.SearchOption]::AllDirectories).Length
    } catch {
        return $false  # a folder in it cannot be listed: not whole, as far as this script can tell
    }
    return [string]$count -eq $fields[1]
}
