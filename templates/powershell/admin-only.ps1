# ---- admin-only folders: who else may write, and creating one no user can change ----

function Get-NonAdminWriter {
    # Accounts other than SYSTEM, Administrators, TrustedInstaller and CREATOR OWNER
    # that may write to $Path: what runs from there must not be theirs to change.
    param([string]$Path)
    $trusted = @('S-1-5-18', 'S-1-5-32-544', 'S-1-3-0', 'S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464')
    $write = [int64][System.Security.AccessControl.FileSystemRights]'WriteData, AppendData, WriteExtendedAttributes, WriteAttributes, Delete, DeleteSubdirectoriesAndFiles, ChangePermissions, TakeOwnership'
    $genericWrite = [int64]0x50000000  # GENERIC_ALL, GENERIC_WRITE
    $acl = Get-Acl -LiteralPath $Path
    foreach ($rule in $acl.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
        $rights = [int64]$rule.FileSystemRights
        if ($rule.AccessControlType -ne 'Allow' -or (($rights -band $write) -eq 0 -and ($rights -band $genericWrite) -eq 0)) {
            continue
        }
        $sid = $rule.IdentityReference.Value
        if ($trusted -notcontains $sid) {
            try {
                $sid + ' (' + $rule.IdentityReference.Translate([Security.Principal.NTAccount]).Value + ')'
            } catch {
                $sid
            }
        }
    }
}

function New-AdminOnlyFolder {
    # Creates $Path with New-AdminOnlySecurity set at creation: CreateDirectory with a
    # DirectorySecurity leaves no moment in which the folder has the inherited ACL.
    param([string]$Path)
    $security = New-AdminOnlySecurity
    if ($PSVersionTable.PSEdition -eq 'Core') {
        [void][IO.FileSystemAclExtensions]::CreateDirectory($security, $Path)  # .NET 5 and later
    } else {
        [void][IO.Directory]::CreateDirectory($Path, $security)  # .NET Framework
    }
}
