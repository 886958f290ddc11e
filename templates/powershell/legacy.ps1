# ---- legacy: what gen-bundle 0.1.0 left in user profiles ----

function Get-LegacyShortcut {
    # gen-bundle 0.1.0 put a per-user Start-menu .url holding a lasting secret in each
    # roaming profile: the ones that are ours (they start with this bundle's URL).
    # Users own these files: read only their first bytes, skip links, and let no single
    # file stop the run.
    $mark = $Latin1.GetBytes("[InternetShortcut]`r`nURL=$BundleUrl")
    foreach ($userProfile in @(Get-CimInstance -ClassName Win32_UserProfile -Filter 'Special = FALSE' -ErrorAction SilentlyContinue)) {
        if ([string]::IsNullOrEmpty($userProfile.LocalPath)) {
            continue
        }
        $path = Join-Path $userProfile.LocalPath $LegacyShortcut
        try {
            $item = Get-Item -LiteralPath $path -Force -ErrorAction Stop
            if ($item.PSIsContainer -or ($item.Attributes -band [IO.FileAttributes]::ReparsePoint)) {
                continue
            }
            $stream = [IO.File]::OpenRead($path)
            try {
                $head = New-Object byte[] $mark.Length
                $read = $stream.Read($head, 0, $head.Length)
            } finally {
                $stream.Dispose()
            }
            if ($read -eq $mark.Length -and [string]::Equals($Latin1.GetString($head), $Latin1.GetString($mark), [StringComparison]::Ordinal)) {
                $path
            }
        } catch {
            Write-Verbose "start menu: $path was not read ($($_.Exception.Message))"
        }
    }
}
