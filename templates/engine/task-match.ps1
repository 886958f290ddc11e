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

function Test-TaskShape {
    # True when $Task has what both of the bundle's tasks compare with $Wanted (its task XML):
    # gen-bundle's, enabled, one action (the same program, arguments and folder), the same
    # description, run level, instances policy and time limit, and one trigger, of the CIM class
    # $TriggerClass; each compared in every form Windows may hand it back in (an enumeration by name or
    # number). When not, install.ps1 registers the task again: a form it did not know would do that
    # at every boot.
    param([object]$Task, [xml]$Wanted, [string]$TriggerClass)
    $action = @($Task.Actions)[0]
    $trigger = @($Task.Triggers)
    $exec = $Wanted.Task.Actions.Exec
    return (Test-OurAuthor -Task $Task) -and
        -not (Test-TaskValue -Value $Task.State -Enum 'State' -Name 'Disabled') -and
        @($Task.Actions).Count -eq 1 -and $action.CimClass.CimClassName -eq 'MSFT_TaskExecAction' -and
        [string]::Equals([string]$Task.Description, $Wanted.Task.RegistrationInfo.Description, [StringComparison]::Ordinal) -and
        [string]::Equals([string]$action.Execute, $exec.Command, [StringComparison]::Ordinal) -and
        [string]::Equals([string]$action.Arguments, $exec.Arguments, [StringComparison]::Ordinal) -and
        [string]::Equals([string]$action.WorkingDirectory, $exec.WorkingDirectory, [StringComparison]::Ordinal) -and
        (Test-TaskValue -Value $Task.Principal.RunLevel -Enum 'RunLevel' -Name 'Limited') -and
        (Test-TaskValue -Value $Task.Settings.MultipleInstances -Enum 'MultipleInstances' -Name $Wanted.Task.Settings.MultipleInstancesPolicy) -and
        [string]::Equals([string]$Task.Settings.ExecutionTimeLimit, $Wanted.Task.Settings.ExecutionTimeLimit, [StringComparison]::Ordinal) -and
        $trigger.Count -eq 1 -and $trigger[0].CimClass.CimClassName -eq $TriggerClass
}

function Test-TaskCurrent {
    # True when the logon task $Task is registered as $Wanted (the bundle's task XML) says: its shape
    # (Test-TaskShape), at logon, and its principal, an account by name or SID.
    param([object]$Task, [xml]$Wanted)
    if (-not (Test-TaskShape -Task $Task -Wanted $Wanted -TriggerClass 'MSFT_TaskLogonTrigger')) {
        return $false
    }
    $principal = $Wanted.Task.Principals.Principal
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

function Test-BrokerTaskCurrent {
    # True when the broker's task $Task is registered as $Wanted (its task XML) says: its shape
    # (Test-TaskShape), at boot, as LOCAL SERVICE (S-1-5-19, which Task Scheduler may hand back as
    # 'LOCAL SERVICE' or 'NT AUTHORITY\LOCAL SERVICE', in the system's language), with its own task SID
    # (ProcessTokenSidType) and no privilege but those the XML requires. MSFT_TaskPrincipal2, which
    # Get-ScheduledTask hands back, has ProcessTokenSidType and RequiredPrivilege.
    param([object]$Task, [xml]$Wanted)
    $principal = $Wanted.Task.Principals.Principal
    return (Test-TaskShape -Task $Task -Wanted $Wanted -TriggerClass 'MSFT_TaskBootTrigger') -and
        [string]::Equals((ConvertTo-Sid ([string]$Task.Principal.UserId)), (ConvertTo-Sid $principal.UserId), [StringComparison]::Ordinal) -and
        (Test-TaskValue -Value $Task.Principal.ProcessTokenSidType -Enum 'ProcessTokenSidType' -Name $principal.ProcessTokenSidType) -and
        [string]::Equals((@($Task.Principal.RequiredPrivilege) -join ','), (@($principal.RequiredPrivileges.Privilege) -join ','), [StringComparison]::OrdinalIgnoreCase)
}
