# ---- engine: the values of the bundle that runs it, failures as exit codes, every change asked for ----
# A module sees neither the variables nor the $PSCmdlet of the script that imports it: the
# script hands them over once (Initialize-GenBundle), and the functions below read them as
# this module's own. Nothing here exits: a failure is thrown with its exit code, and the
# script's one catch turns it into that code (Resolve-BundleFailure).

$PlanEntries = New-Object System.Collections.Generic.List[object]  # every change asked for, in order (-Plan)

function Initialize-GenBundle {
    # $Values: the bundle's values (the script's values block), the script's own (Root, ScriptName)
    # and its -WhatIf and -Verbose ($WhatIfPreference, $VerbosePreference), which the cmdlets
    # called here would not see otherwise. $Caller: the script's $PSCmdlet, which answers
    # ShouldProcess for the script's -WhatIf and -Confirm.
    param([hashtable]$Values, [object]$Caller)
    foreach ($name in $Values.Keys) {
        Set-Variable -Scope Script -Name $name -Value $Values[$name] -WhatIf:$false  # the values may set $WhatIfPreference
    }
    $script:Cmdlet = $Caller
}

function Get-EngineLanguageMode {
    # The language mode this engine's functions run in: install.ps1 and uninstall.ps1 load the engine
    # from its checked bytes, and load it as a file instead when this is not FullLanguage.
    return [string]$ExecutionContext.SessionState.LanguageMode
}

function Stop-Bundle {
    # Ends the run with $Code: the script's catch writes $Message and exits with the code.
    param([int]$Code, [string]$Message)
    $failure = New-Object InvalidOperationException($Message)
    $failure.Data['GenBundleExitCode'] = $Code
    throw $failure
}

function Resolve-BundleFailure {
    # The exit code of what ended the run, its message written: a code Stop-Bundle gave, 4 for a
    # hosts file that cannot be edited (InvalidDataException, nothing changed yet), else 1603.
    param([System.Management.Automation.ErrorRecord]$Record)
    $failure = $Record.Exception
    $code = $ExitFailure
    if ($failure.Data.Contains('GenBundleExitCode')) {
        $code = [int]$failure.Data['GenBundleExitCode']
    } elseif ($failure -is [IO.InvalidDataException]) {
        $code = $ExitPreflight
    }
    $Run.ExitCode = $code  # for the run's event (Write-RunEvent)
    $Run.ExitMessage = $failure.Message
    if ($code -eq 0) {
        Write-Warning $failure.Message
    } elseif ($failure -is [IO.InvalidDataException]) {
        $Host.UI.WriteErrorLine("ERROR: $($failure.Message). Nothing was changed.")
    } else {
        $Host.UI.WriteErrorLine("ERROR: $($failure.Message)")
    }
    return $code
}

function Confirm-Change {
    # Every change the scripts make asks here first, and runs only when this returns $true: the
    # script's ShouldProcess (-WhatIf shows it and skips it, -Confirm asks) with what changes and
    # how, the ACL in words and as SDDL; and the change goes into the plan (-Plan), with the step
    # of uninstall.ps1 that takes it back. $Kind is one of the kinds the bundle's README lists.
    # The plan records the answer too: yes, no (-Confirm declined) or whatif (shown only).
    param([string]$Kind, [string]$Target, [string]$Action, [string]$Acl = '', [string]$Undo = '')
    $entry = [pscustomobject][ordered]@{ kind = $Kind; target = $Target; action = $Action; acl = $Acl; undo = $Undo; answer = 'whatif' }
    $PlanEntries.Add($entry)
    $text = $Action
    if ($Acl) {
        $text += "; ACL: $Acl"
    }
    $yes = $Cmdlet.ShouldProcess($Target, $text)
    if ($yes) {
        $entry.answer = 'yes'
    } elseif (-not $WhatIfPreference) {
        $entry.answer = 'no'
    }
    return $yes
}

function Format-FolderSecurity {
    # A folder's DirectorySecurity as the reviewer reads it, in words, then as SDDL for the record.
    param([System.Security.AccessControl.DirectorySecurity]$Security)
    $names = @{ 'S-1-5-18' = 'SYSTEM'; 'S-1-5-32-544' = 'Administrators'; 'S-1-5-32-545' = 'Users' }
    $rules = foreach ($rule in $Security.GetAccessRules($true, $false, [Security.Principal.SecurityIdentifier])) {
        $who = $rule.IdentityReference.Value
        if ($names.ContainsKey($who)) {
            $who = $names[$who]
        }
        "$who $($rule.FileSystemRights)"
    }
    $owner = $Security.GetOwner([Security.Principal.SecurityIdentifier]).Value
    if ($names.ContainsKey($owner)) {
        $owner = $names[$owner]
    }
    return "owner $owner; $(@($rules) -join ', '); nothing inherited (SDDL $($Security.GetSecurityDescriptorSddlForm('All')))"
}

function Write-BundlePlan {
    # The plan of this run, as JSON, to the file -Plan names: every change asked for, whether
    # it was made or (-WhatIf) only shown. UTF-8 without a BOM.
    param([string]$Path)
    if ($Path) {
        # A relative -Plan is below PowerShell's current folder, as for any cmdlet: .NET would take
        # the process's, which Set-Location does not change (an elevated console's is System32).
        $Path = [IO.Path]::GetFullPath([IO.Path]::Combine((Get-Location -PSProvider FileSystem).ProviderPath, $Path))
        [IO.File]::WriteAllText($Path, (ConvertTo-Json -InputObject @($PlanEntries) -Depth 3), (New-Object Text.UTF8Encoding($false)))
    }
}
