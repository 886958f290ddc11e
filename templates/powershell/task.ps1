# ---- task: the bundle's scheduled task ----

function Get-OurTask {
    return @(Get-ScheduledTask -TaskPath $TaskFolder -ErrorAction SilentlyContinue | Where-Object { $_.TaskName -eq $TaskName })
}
