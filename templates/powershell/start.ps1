# The engine checked (exit 2), then loaded from those checked bytes in memory: no file is written
# (-WhatIf writes nothing), and the engine's file is not read again to load it.
if (-not $engineIsOurs) {
    $Host.UI.WriteErrorLine("ERROR: $($Bundle.EngineFile) is missing or is not the engine this script names: the bundle changed after review. Nothing was changed.")
    exit 2
}
$engineFolder = $null
try {
    $null = New-Module -Name ([IO.Path]::GetFileNameWithoutExtension($Bundle.EngineFile)) -ScriptBlock ([ScriptBlock]::Create([Text.Encoding]::UTF8.GetString($engineBytes, 3, $unsignedLength - 3)))  # less the UTF-8 BOM
    $engineMode = Get-EngineLanguageMode
} catch {
    $engineMode = $_.Exception.Message
}
if ($engineMode -ne 'FullLanguage') {
    # Under WDAC or AppLocker, Microsoft documents a module made from a string as constrained even in
    # an allowed script; a signed file keeps full language. Then the checked bytes are written to a
    # new folder of this run that only SYSTEM, administrators and this account can write, and
    # imported from there, replacing every function; the folder is deleted at the end.
    $security = New-Object System.Security.AccessControl.DirectorySecurity
    $security.SetSecurityDescriptorSddlForm("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;$([Security.Principal.WindowsIdentity]::GetCurrent().User.Value))")
    $engineFolder = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-' + [Guid]::NewGuid().ToString('N'))
    if ($PSVersionTable.PSEdition -eq 'Core') { [void][IO.FileSystemAclExtensions]::CreateDirectory($security, $engineFolder) } else { [void][IO.Directory]::CreateDirectory($engineFolder, $security) }
    [IO.File]::WriteAllBytes((Join-Path $engineFolder $Bundle.EngineFile), $engineBytes)
    Import-Module -Name (Join-Path $engineFolder $Bundle.EngineFile) -DisableNameChecking
}
Initialize-GenBundle -Caller $PSCmdlet -Values ($Bundle + @{ BundleRoot = $PSScriptRoot; ScriptName = (Split-Path -Leaf $PSCommandPath); WhatIfPreference = $WhatIfPreference; VerbosePreference = $VerbosePreference })
