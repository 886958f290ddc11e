# ---- task: the bundle's scheduled task ----

function Get-OurTask {
    # The bundle's task of that name in $TaskFolder: the logon task, or the broker's ($BrokerTaskName).
    param([string]$Name = $TaskName)
    return @(Get-ScheduledTask -TaskPath $TaskFolder -ErrorAction SilentlyContinue | Where-Object { $_.TaskName -eq $Name })
}

function Test-OurAuthor {
    # True when the scheduled task $Task names gen-bundle as its Author, compared
    # ordinally: a task of the bundle's name is the bundle's only then.
    param([object]$Task)
    return [string]::Equals([string]$Task.Author, $TaskAuthor, [StringComparison]::Ordinal)
}

function Test-BrokerRunning {
    # True when the broker's task is there and runs (its State Running, by name or number).
    $task = @(Get-OurTask -Name $BrokerTaskName)
    return $task.Count -gt 0 -and (Test-TaskValue -Value $task[0].State -Enum 'State' -Name 'Running')
}
