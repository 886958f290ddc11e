# ---- start menu: the entry for all users ----

function Get-Shortcut {
    # The Start-menu entry's current settings (WScript.Shell reads an existing .lnk), or $null.
    if (-not (Test-Path -LiteralPath $ShortcutPath -PathType Leaf)) {
        return $null
    }
    return (New-Object -ComObject WScript.Shell).CreateShortcut($ShortcutPath)
}
