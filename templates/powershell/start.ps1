# The engine checked (exit 2), copied to a folder of this run that only SYSTEM, administrators and
# this account can write, and loaded from there; the folder is deleted at the end.
if (-not $engineIsOurs) {
    $Host.UI.WriteErrorLine("ERROR: $($Bundle.EngineFile) is missing or is not the engine this script names: the bundle changed after review. Nothing was changed.")
    exit 2
}
$security = New-Object System.Security.AccessControl.DirectorySecurity
$security.SetSecurityDescriptorSddlForm("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;$([Security.Principal.WindowsIdentity]::GetCurrent().User.Value))")
$engineFolder = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-' + [Guid]::NewGuid().ToString('N'))
if ($PSVersionTable.PSEdition -eq 'Core') { [void][IO.FileSystemAclExtensions]::CreateDirectory($security, $engineFolder) } else { [void][IO.Directory]::CreateDirectory($engineFolder, $security) }
[IO.File]::WriteAllBytes((Join-Path $engineFolder $Bundle.EngineFile), $engineBytes)
Import-Module -Name (Join-Path $engineFolder $Bundle.EngineFile) -DisableNameChecking
Initialize-GenBundle -Caller $PSCmdlet -Values ($Bundle + @{ BundleRoot = $PSScriptRoot; ScriptName = (Split-Path -Leaf $PSCommandPath); WhatIfPreference = $WhatIfPreference; VerbosePreference = $VerbosePreference })
