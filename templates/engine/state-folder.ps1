# ---- state folders: $StateRoot, the bundle's folder there, and its logs (administrators only) ----

function Get-StateFolderProblem {
    # Each level that is there and that SYSTEM must not write through (admin-only.ps1).
    foreach ($folder in @($StateRoot, $StateDir, $StateLogDir)) {
        if (Test-Entry $folder) {
            try {
                $problem = Get-AdminOnlyProblem $folder
            } catch [UnauthorizedAccessException] {
                if ($elevated) {
                    throw
                }
                # Not elevated (-WhatIf, which only looks): an admin-only folder cannot be read.
                Write-Warning "state: $folder can be read by administrators only; run elevated to have it checked"
                continue
            }
            if ($problem) {
                "$problem, and gen-bundle writes its receipt and logs there as SYSTEM: a user could make it write or delete elsewhere. Look at what is in it, then remove it"
            }
        }
    }
}

function New-StateFolder {
    # Creates each missing level, one at a time, each with its own ACL from its creation:
    # $InstallRoot lets users read and run what is below it (the launcher is in $InstallDir,
    # which inherits that), the state folders are for administrators only. Then it checks the
    # state levels again: a folder that a user made first, in the meantime, is theirs, and is
    # refused. ($InstallRoot, which an administrator may have made, passed the preflight's check
    # of who may write there.)
    foreach ($level in @(@($InstallRoot, $true), @($StateRoot, $false), @($StateDir, $false), @($StateLogDir, $false))) {
        if (-not (Test-Entry $level[0])) {
            New-AdminOnlyFolder -Path $level[0] -UsersRead:$level[1]
        }
    }
    foreach ($folder in @($StateRoot, $StateDir, $StateLogDir)) {
        $problem = Get-AdminOnlyProblem $folder
        if ($problem) {
            throw "$problem; nothing was written there"
        }
    }
}
