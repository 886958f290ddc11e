# PSScriptAnalyzer's settings for gen-bundle's PowerShell: the engine's source (templates/engine/)
# and the scripts of a rendered bundle. The Windows workflow runs it on both (a finding of severity
# Warning or Error fails it); docs/engine.md says how to run it by hand. Editors that lint with
# PSScriptAnalyzer find it here, at the top of the checkout.
#
# Every rule PSScriptAnalyzer runs by default runs, but the ones under ExcludeRules, each with why;
# PSUseCompatibleSyntax is switched on, under Rules. PSUseCompatibleCommands and
# PSUseCompatibleTypes stay off: tests/test_windows_api.py binds every command against Microsoft's
# parameter tables of 5.1 and 7.4 and every .NET type against the reference assemblies, on Linux,
# where the rules' profiles of whole machines would also flag the modules a bundle checks for.
@{
    ExcludeRules = @(
        # The engine's New-, Set-, Remove-, Start-, Stop- and Restart- functions are steps of
        # install.ps1 and uninstall.ps1, not commands of their own: each change they make asks first
        # through Confirm-Change (engine-core.ps1), which puts it in the plan (-Plan) and asks the
        # script's own ShouldProcess. The scripts take -WhatIf and -Confirm; their steps do not.
        'PSUseShouldProcessForStateChangingFunctions'
        # Confirm-Change calls ShouldProcess on the script's $PSCmdlet, handed to the engine by
        # Initialize-GenBundle: the script declares SupportsShouldProcess, not the function that
        # asks for it.
        'PSShouldProcess'
    )
    Rules = @{
        # Windows PowerShell 5.1 runs the bundle where Intune and Group Policy run it; PowerShell 7
        # runs it too.
        PSUseCompatibleSyntax = @{
            Enable         = $true
            TargetVersions = @('5.1', '7.0')
        }
        # Plural where the function handles several at once: Install-BundleFiles,
        # Remove-BundleFiles, Show-Bytes, Test-BrokerHolds. Data and Windows are the rule's own.
        PSUseSingularNouns = @{
            Enable        = $true
            NounAllowList = @('Data', 'Windows', 'Files', 'Bytes', 'Holds')
        }
    }
}
