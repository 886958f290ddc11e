# ---- task state: the task's enumerations, and a task an administrator disabled ----
# Get-ScheduledTask hands back the task's enumerations (State, RunLevel, MultipleInstances) by
# name or by number, depending on how PowerShell adapts the CIM value: each is compared in both
# forms. The numbers are Task Scheduler's (TASK_STATE, TASK_RUNLEVEL_TYPE, TASK_INSTANCES_POLICY,
# TASK_PROCESSTOKENSID_TYPE, https://learn.microsoft.com/windows/win32/taskschd/task-scheduler-enumerated-types).
$TaskEnums = @{
    State             = @{ Unknown = 0; Disabled = 1; Queued = 2; Ready = 3; Running = 4 }
    RunLevel          = @{ Limited = 0; Highest = 1 }
    MultipleInstances = @{ Parallel = 0; Queue = 1; IgnoreNew = 2; StopExisting = 3 }
    ProcessTokenSidType = @{ None = 0; Unrestricted = 1; Default = 2 }
}

function Test-TaskValue {
    # True when $Value, one of the task's enumerations, is $Name: written as the name or as its number.
    param([object]$Value, [string]$Enum, [string]$Name)
    $text = [string]$Value
    return [string]::Equals($text, $Name, [StringComparison]::OrdinalIgnoreCase) -or
        [string]::Equals($text, [string]$TaskEnums[$Enum][$Name], [StringComparison]::Ordinal)
}

function Test-TaskDisabledByAdmin {
    # gen-bundle's task, disabled, and not by a failed check ($ByCheck: the receipt's disabledByCheck
    # is there): an administrator's choice. install.ps1 then changes nothing and exits 0, and
    # detect.ps1 reports the bundle as installed, so that Intune or SCCM, which read the two
    # together, do not run install.ps1 again and again.
    param([object]$Task, [bool]$ByCheck)
    return -not $ByCheck -and (Test-OurAuthor -Task $Task) -and
        (Test-TaskValue -Value $Task.State -Enum 'State' -Name 'Disabled')
}
