# ---- state folder: %ProgramData%\gen-bundle\<name>, only administrators can change it ----

function New-AdminOnlySecurity {
    # Owner Administrators; SYSTEM and administrators write, users read; nothing inherited
    # from %ProgramData%, where users may create files.
    $security = New-Object System.Security.AccessControl.DirectorySecurity
    $security.SetOwner((New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-544')))
    $security.SetAccessRuleProtection($true, $false)
    foreach ($grant in @(@('S-1-5-18', 'FullControl'), @('S-1-5-32-544', 'FullControl'), @('S-1-5-32-545', 'ReadAndExecute'))) {
        $identity = New-Object System.Security.Principal.SecurityIdentifier($grant[0])
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($identity, $grant[1], 'ContainerInherit, ObjectInherit', 'None', 'Allow')
        $security.AddAccessRule($rule)
    }
    return $security
}

function Protect-StateDirectory {
    # %ProgramData% lets users create folders (and own them): %ProgramData%\gen-bundle and
    # its bundle folder get Administrators as owner, and SYSTEM and administrators alone
    # may write there; users may read. A link planted there is refused.
    foreach ($folder in @((Split-Path -Parent $StateDir), $StateDir)) {
        if ((Test-Path -LiteralPath $folder) -and ((Get-Item -LiteralPath $folder -Force).Attributes -band [IO.FileAttributes]::ReparsePoint)) {
            throw "$folder is a link (junction or symbolic link), which gen-bundle does not write through; remove it"
        }
        [void][IO.Directory]::CreateDirectory($folder)
        Set-Acl -LiteralPath $folder -AclObject (New-AdminOnlySecurity)
    }
}
