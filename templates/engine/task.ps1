# ---- task: the bundle's scheduled task ----

function Get-OurTask {
    # The bundle's task of that name in $TaskFolder: the logon task, or the broker's ($BrokerTaskName).
    param([string]$Name = $TaskName)
    return @(Get-ScheduledTask -TaskPath $TaskFolder -ErrorAction SilentlyContinue | Where-Object { $_.TaskName -eq $Name })
}

function Test-BrokerRunning {
    # True when the broker's task is there and runs (its State Running, by name or number).
    $task = @(Get-OurTask -Name $BrokerTaskName)
    return $task.Count -gt 0 -and (Test-TaskValue -Value $task[0].State -Enum 'State' -Name 'Running')
}
