# ---- task match: is the registered task the one this bundle's task XML describes? ----

function ConvertTo-Sid {
    # An account as Task Scheduler may hand it back (DOMAIN\name, name, or a SID) as its SID;
    # '' when Windows cannot tell (a domain account with no domain controller in reach).
    param([string]$Account)
    if ($Account -cmatch '^S-1-[0-9-]+$') {
        return $Account
    }
    try {
        return (New-Object Security.Principal.NTAccount($Account)).Translate([Security.Principal.SecurityIdentifier]).Value
    } catch {
        return ''
    }
}

function Test-TaskCurrent {
    # True when $Task is registered as $Wanted (the bundle's task XML) says: gen-bundle's, enabled,
    # the same action, principal, trigger and settings, each compared in every form Windows may
    # hand it back in (an enumeration by name or number, an account by name or SID). When not,
    # install.ps1 registers the task again: a form it did not know would do that at every boot.
    param([object]$Task, [xml]$Wanted)
    $action = @($Task.Actions)[0]
    $trigger = @($Task.Triggers)
    $exec = $Wanted.Task.Actions.Exec
    $principal = $Wanted.Task.Principals.Principal
    $same = [string]::Equals([string]$Task.Author, 'gen-bundle', [StringComparison]::Ordinal) -and
        -not (Test-TaskValue -Value $Task.State -Enum 'State' -Name 'Disabled') -and
        $null -ne $action -and $action.CimClass.CimClassName -eq 'MSFT_TaskExecAction' -and
        [string]::Equals([string]$Task.Description, $Wanted.Task.RegistrationInfo.Description, [StringComparison]::Ordinal) -and
        [string]::Equals([string]$action.Execute, $exec.Command, [StringComparison]::Ordinal) -and
        [string]::Equals([string]$action.Arguments, $exec.Arguments, [StringComparison]::Ordinal) -and
        [string]::Equals([string]$action.WorkingDirectory, $exec.WorkingDirectory, [StringComparison]::Ordinal) -and
        (Test-TaskValue -Value $Task.Principal.RunLevel -Enum 'RunLevel' -Name 'Limited') -and
        (Test-TaskValue -Value $Task.Settings.MultipleInstances -Enum 'MultipleInstances' -Name $Wanted.Task.Settings.MultipleInstancesPolicy) -and
        [string]::Equals([string]$Task.Settings.ExecutionTimeLimit, $Wanted.Task.Settings.ExecutionTimeLimit, [StringComparison]::Ordinal) -and
        $trigger.Count -eq 1 -and $trigger[0].CimClass.CimClassName -eq 'MSFT_TaskLogonTrigger'
    if (-not $same) {
        return $false
    }
    if ($BundleScope -eq 'machine') {
        $want = ConvertTo-Sid $principal.GroupId
        return $want -ne '' -and [string]::Equals((ConvertTo-Sid ([string]$Task.Principal.GroupId)), $want, [StringComparison]::Ordinal)
    }
    $have = [string]$Task.Principal.UserId
    foreach ($form in @($principal.UserId, ($principal.UserId -split '\\')[-1])) {
        if ([string]::Equals($have, $form, [StringComparison]::OrdinalIgnoreCase)) {
            return $true
        }
    }
    $want = ConvertTo-Sid $principal.UserId
    return $want -ne '' -and [string]::Equals((ConvertTo-Sid $have), $want, [StringComparison]::Ordinal)
}
