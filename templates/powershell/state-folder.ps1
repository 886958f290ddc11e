# ---- state folders: $StateRoot, the bundle's folder there, and its logs (administrators only) ----

function Get-StateFolderProblem {
    # Each level that is there and that SYSTEM must not write through (admin-only.ps1).
    foreach ($folder in @($StateRoot, $StateDir, $StateLogDir)) {
        if (Test-Entry $folder) {
            $problem = Get-AdminOnlyProblem $folder
            if ($problem) {
                "$problem, and gen-bundle writes its receipt and logs there as SYSTEM: a user could make it write or delete elsewhere. Look at what is in it, then remove it"
            }
        }
    }
}

function New-StateFolder {
    # Creates each missing level, admin-only from its creation, then checks every level again:
    # a folder that a user made first, in the meantime, is theirs, and is refused.
    foreach ($folder in @($StateRoot, $StateDir, $StateLogDir)) {
        if (-not (Test-Entry $folder)) {
            New-AdminOnlyFolder -Path $folder
        }
        $problem = Get-AdminOnlyProblem $folder
        if ($problem) {
            throw "$problem; nothing was written there"
        }
    }
}
