# ---- admin-only folders: who else may write, and creating one no user can change ----
# The state folders are under %ProgramFiles% (the preflight checks that no user can write
# there), and %ProgramData%\jupyter under %ProgramData%, where users may create folders and
# own what they create. SYSTEM writes only into a folder that it created with its ACL set at
# creation, or that is a real folder (no link) owned by SYSTEM or Administrators which
# nobody else may change.

$AdminSids = @('S-1-5-18', 'S-1-5-32-544')  # SYSTEM, Administrators
$TrustedInstallerSid = 'S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464'

function Get-PathSecurity {
    # The owner and the DACL of $Path, read by .NET: Get-Acl also turns every SID into a name (a
    # call to LSA each), and the Python tree's walk reads some thousands of them at every boot.
    param([string]$Path)
    $sections = [Security.AccessControl.AccessControlSections]'Access, Owner'
    if ($PSVersionTable.PSEdition -eq 'Core') {
        if ([IO.Directory]::Exists($Path)) {
            return [IO.FileSystemAclExtensions]::GetAccessControl((New-Object IO.DirectoryInfo($Path)), $sections)  # .NET 5 and later
        }
        return [IO.FileSystemAclExtensions]::GetAccessControl((New-Object IO.FileInfo($Path)), $sections)
    }
    if ([IO.Directory]::Exists($Path)) {
        return [IO.Directory]::GetAccessControl($Path, $sections)  # .NET Framework
    }
    return [IO.File]::GetAccessControl($Path, $sections)
}

function Get-NonAdminWriter {
    # Accounts other than SYSTEM, Administrators, TrustedInstaller and CREATOR OWNER (and the SID
    # $Trusted names) that may write to $Path: what runs from there must not be theirs to change.
    # Its owner too, unless $Owners holds it (by default SYSTEM, Administrators, TrustedInstaller): an owner may always change the ACL (WRITE_DAC), so
    # an owner outside the trusted accounts can grant itself any right. An administrator's own
    # account counts as such an owner too: whether an account is an administrator can change.
    # -AnyOwner: owners are not judged (what install.ps1 itself made below a folder of its own).
    param([string]$Path, [string]$Trusted, [switch]$AnyOwner, [string[]]$Owners)
    if (-not $Owners) {
        $Owners = $AdminSids + $TrustedInstallerSid
    }
    $allowed = $AdminSids + @($TrustedInstallerSid, 'S-1-3-0', $Trusted)  # S-1-3-0: CREATOR OWNER
    $write = [int64][System.Security.AccessControl.FileSystemRights]'WriteData, AppendData, WriteExtendedAttributes, WriteAttributes, Delete, DeleteSubdirectoriesAndFiles, ChangePermissions, TakeOwnership'
    $genericWrite = [int64]0x50000000  # GENERIC_ALL, GENERIC_WRITE
    $security = Get-PathSecurity $Path
    $found = New-Object System.Collections.Generic.List[string]
    if (-not $AnyOwner) {
        $owner = $security.GetOwner([Security.Principal.SecurityIdentifier])
        if ($null -eq $owner) {
            $found.Add('an owner that could not be read')
        } elseif ($Owners -notcontains $owner.Value) {
            $found.Add((Get-AccountName $owner) + ' as its owner')
        }
    }
    foreach ($rule in $security.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
        $rights = [int64]$rule.FileSystemRights
        if ($rule.AccessControlType -ne 'Allow' -or (($rights -band $write) -eq 0 -and ($rights -band $genericWrite) -eq 0)) {
            continue
        }
        if ($allowed -notcontains $rule.IdentityReference.Value) {
            $found.Add((Get-AccountName $rule.IdentityReference))
        }
    }
    return $found.ToArray()
}

function Get-AccountName {
    # 'SID (DOMAIN\name)', or the SID alone when Windows cannot name it.
    param([Security.Principal.SecurityIdentifier]$Sid)
    try {
        return $Sid.Value + ' (' + $Sid.Translate([Security.Principal.NTAccount]).Value + ')'
    } catch {
        return $Sid.Value
    }
}

function New-AdminOnlyFolder {
    # Creates $Path with New-AdminOnlySecurity set at creation: CreateDirectory with a
    # DirectorySecurity leaves no moment in which the folder has the inherited ACL. It does
    # nothing to a folder that is already there: callers check the result (Get-AdminOnlyProblem).
    # It creates that one level only: given a DirectorySecurity, CreateDirectory also creates
    # every missing parent, each with this same ACL (Microsoft's API page), so a missing parent
    # is an error here and callers create each level themselves, each with its own ACL.
    param([string]$Path, [switch]$UsersRead, [string]$Writer = '')
    if (-not (Test-Path -LiteralPath (Split-Path -Parent $Path) -PathType Container)) {
        throw "$(Split-Path -Parent $Path) is missing: it is created first, with its own ACL, before $Path"
    }
    $security = New-AdminOnlySecurity -UsersRead:$UsersRead -Writer $Writer
    if ($PSVersionTable.PSEdition -eq 'Core') {
        [void][IO.FileSystemAclExtensions]::CreateDirectory($security, $Path)  # .NET 5 and later
    } else {
        [void][IO.Directory]::CreateDirectory($Path, $security)  # .NET Framework
    }
}

function New-AdminOnlySecurity {
    # Owner Administrators; SYSTEM and administrators write; nothing inherited from the
    # parent. -UsersRead: users may read too (Jupyter reads %ProgramData%\jupyter as each
    # user). The state folders are for administrators only: their logs quote users' logs. -Writer: one
    # more SID may modify what is in it (the broker's task SID, in the broker's log folder).
    param([switch]$UsersRead, [string]$Writer = '')
    $security = New-Object System.Security.AccessControl.DirectorySecurity
    $security.SetOwner((New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-544')))
    $security.SetAccessRuleProtection($true, $false)
    $grants = @(@('S-1-5-18', 'FullControl'), @('S-1-5-32-544', 'FullControl'))
    if ($UsersRead) {
        $grants += ,@('S-1-5-32-545', 'ReadAndExecute')
    }
    if ($Writer) {
        # The files the writer makes are owned by its token's user (LOCAL SERVICE for the broker's task),
        # which an owner's implicit rights would let every process of that account re-ACL: OWNER RIGHTS
        # (S-1-3-4) replaces them with reading attributes only.
        $grants += ,@($Writer, 'Modify')
        $grants += ,@('S-1-3-4', 'ReadAttributes')
    }
    foreach ($grant in $grants) {
        $identity = New-Object System.Security.Principal.SecurityIdentifier($grant[0])
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($identity, $grant[1], 'ContainerInherit, ObjectInherit', 'None', 'Allow')
        $security.AddAccessRule($rule)
    }
    return $security
}

function Test-Entry {
    # True when $Path names anything, a link whose target is gone included: GetAttributes
    # reads the last component itself, it does not follow it. Access denied (below an admin-only
    # folder, in a run that is not elevated: -WhatIf) is not "missing": something may be there,
    # and the checks that read it next say what they cannot see.
    param([string]$Path)
    try {
        [void][IO.File]::GetAttributes($Path)
        return $true
    } catch [IO.FileNotFoundException] {
        return $false
    } catch [IO.DirectoryNotFoundException] {
        return $false
    } catch [UnauthorizedAccessException] {
        return $true
    }
}

function Get-UserMadeReason {
    # Why $Path, which is there, is not administrators' to build on - a link, or an owner other
    # than SYSTEM or Administrators - or nothing. Under %ProgramData% that is what a user made.
    param([string]$Path)
    if ([IO.File]::GetAttributes($Path) -band [IO.FileAttributes]::ReparsePoint) {
        return 'a link (junction or symbolic link)'
    }
    try {
        $owner = (Get-PathSecurity $Path).GetOwner([Security.Principal.SecurityIdentifier])
    } catch [UnauthorizedAccessException] {
        return 'one whose owner administrators may not read'  # its owner shut them out: not theirs
    }
    if ($AdminSids -contains $owner.Value) {
        return $null
    }
    return "owned by $(Get-AccountName $owner)"
}

function Get-AdminOnlyProblem {
    # Why SYSTEM must not write through the folder $Path, or nothing. -Writer: the one SID besides
    # administrators that may change what is in it (New-AdminOnlySecurity -Writer).
    param([string]$Path, [string]$Writer = '')
    $attributes = [IO.File]::GetAttributes($Path)
    if ($attributes -band [IO.FileAttributes]::ReparsePoint) {
        return "$Path is a link (junction or symbolic link)"
    }
    if (-not ($attributes -band [IO.FileAttributes]::Directory)) {
        return "$Path is a file, not a folder"
    }
    $writers = @(Get-NonAdminWriter -Path $Path -Trusted $Writer -Owners $AdminSids)
    if ($writers.Count -gt 0) {
        return "$Path can be changed by $($writers -join ', ')"
    }
    return $null
}
