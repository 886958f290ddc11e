# Pester 5 tests of the broker (docs/broker.md), run for real as its task runs it: the bundle's own
# py.broker.py ($env:GEN_BUNDLE_OUT) under the task tests/test_broker_task.py renders for the
# runner's python.exe (LOCAL SERVICE, its own task SID), the runner's own notebook server
# registering behind it. The bundle's task names a python.exe the runner does not have (Install.Tests.ps1
# installs it all the same): this is the only place the broker's Windows code (the named pipe,
# impersonation, GetExtendedTcpTable, NtQuerySystemInformation, the event log, socket.share) runs.
# See .github/workflows/windows.yml: $env:GEN_BUNDLE_BROKER is the folder tests/pester/prepare_broker.py
# filled (the task's XML for the runner's python.exe, which has notebook, and the server's settings).
# Nothing here touches the hosts file: requests go to 127.0.0.13 with the Host header the name would send.

BeforeAll {
    $script:Staged = $env:GEN_BUNDLE_BROKER
    $script:TaskPath = '\gen-bundle\'
    $script:TaskName = 'py-broker'
    $script:Root = Join-Path $env:ProgramFiles 'gen-bundle'
    $script:LogFolder = Join-Path $script:Root 'state\py\broker'
    $script:Log = Join-Path $script:LogFolder 'broker.log'
    $script:Work = Join-Path $env:RUNNER_TEMP ('gen-bundle-broker-' + [Guid]::NewGuid().ToString('N'))
    $script:Made = @()
    $script:Server = $null
    $script:Supervisor = 0
    $script:ServerLog = Join-Path $script:Work 'server.err.log'
    $script:Session = (Get-Process -Id $PID).SessionId
    $script:Scheduler = New-Object -ComObject Schedule.Service
    $script:Scheduler.Connect()
    $script:TaskFolderWasThere = $true
    try { [void]$script:Scheduler.GetFolder('\gen-bundle') } catch { $script:TaskFolderWasThere = $false }

    function New-Level {
        # One folder level, remembered when this made it (AfterAll removes those, deepest first).
        param([string]$Path)
        if (-not (Test-Path -LiteralPath $Path)) {
            [void][IO.Directory]::CreateDirectory($Path)
            $script:Made = @($Path) + $script:Made
        }
    }
    function Get-Text {
        param([string]$Path)
        if (Test-Path -LiteralPath $Path) { "$(Get-Content -LiteralPath $Path -Raw)" } else { '' }
    }
    function Get-BrokerEvent {
        # The broker's log: one JSON object a line; a line being written may be cut short.
        param([int]$Id)
        foreach ($line in @((Get-Text $script:Log) -split "`r?`n")) {
            if ($line -match ('"event": ' + $Id + '[,}]')) {
                try { $line | ConvertFrom-Json } catch { }
            }
        }
    }
    function Get-Worker {
        Get-CimInstance -ClassName Win32_Process -Filter "ParentProcessId = $($script:Supervisor) AND Name = 'python.exe'"
    }
    function Test-Bind {
        # True when this process can listen on ADDRESS:80 (then it lets go at once).
        param([string]$Address)
        $listener = New-Object Net.Sockets.TcpListener([Net.IPAddress]::Parse($Address), 80)
        try {
            $listener.Start()
            $listener.Stop()
            return $true
        } catch {
            return $false
        }
    }

    if (-not $script:Staged) { throw 'GEN_BUNDLE_BROKER names no folder: see .github/workflows/windows.yml' }
    # The task's processes run as LOCAL SERVICE: an administrator ends them with SeDebugPrivilege.
    [Diagnostics.Process]::EnterDebugMode()
    [void][IO.Directory]::CreateDirectory($script:Work)
    $script:Sid = (Get-Text (Join-Path $script:Staged 'broker-task-sid.txt')).Trim()
    if ($script:Sid -notmatch '^S-1-5-87-') { throw "prepare_broker.py wrote no task SID in $($script:Staged)" }

    # What install.ps1's broker steps will do: the broker where the task's action names it, its log
    # folder writable by its task SID only (SYSTEM and Administrators keep full control), the task.
    New-Level $script:Root
    New-Level (Join-Path $script:Root 'py')
    New-Level (Join-Path $script:Root 'state')
    New-Level (Join-Path $script:Root 'state\py')
    New-Level $script:LogFolder
    Copy-Item -LiteralPath (Join-Path $env:GEN_BUNDLE_OUT 'py.broker.py') -Destination (Join-Path $script:Root 'py\py.broker.py')
    $xml = Get-Content -LiteralPath (Join-Path $script:Staged 'py.broker.task.xml') -Raw  # UTF-16LE with a BOM
    Register-ScheduledTask -Xml $xml -TaskName $script:TaskName -TaskPath $script:TaskPath -ErrorAction Stop | Out-Null
    $ErrorActionPreference = 'Continue'
    & "$env:SystemRoot\System32\icacls.exe" $script:LogFolder /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' ('*' + $script:Sid + ':(OI)(CI)M') | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "icacls could not give the broker's task SID its log folder (exit code $LASTEXITCODE)" }
    $script:Python = @((Get-ScheduledTask -TaskPath $script:TaskPath -TaskName $script:TaskName).Actions)[0].Execute
    Start-ScheduledTask -TaskPath $script:TaskPath -TaskName $script:TaskName -ErrorAction Stop

    $deadline = (Get-Date).AddSeconds(60)
    do {
        Start-Sleep -Milliseconds 500
        $script:Listener = @(Get-NetTCPConnection -State Listen -LocalAddress '127.0.0.13' -LocalPort 80 -ErrorAction SilentlyContinue)
        $started = @(Get-BrokerEvent 100).Count -gt 0
    } until (($script:Listener.Count -gt 0 -and $started) -or (Get-Date) -gt $deadline)
    if ($script:Listener.Count -eq 0 -or -not $started) {
        $info = Get-ScheduledTaskInfo -TaskPath $script:TaskPath -TaskName $script:TaskName
        throw ("the broker did not start within 60 s (listening: $($script:Listener.Count); the task's last result: " +
            "$($info.LastTaskResult)); its log:`n" + (Get-Text $script:Log))
    }
    # The task's own process: the supervisor (its worker's command line says worker, not serve).
    $script:Supervisor = @(Get-CimInstance -ClassName Win32_Process -Filter "Name = 'python.exe'" |
        Where-Object { "$($_.CommandLine)" -match 'py\.broker\.py"? serve ' } | ForEach-Object { $_.ProcessId })
    if ($script:Supervisor.Count -ne 1) { throw "not one broker supervisor but $($script:Supervisor.Count)" }
    $script:Supervisor = $script:Supervisor[0]
}

Describe 'the broker, started by its task' {
    It 'is registered as LOCAL SERVICE with its own task SID and one privilege' {
        $principal = (Get-ScheduledTask -TaskPath $script:TaskPath -TaskName $script:TaskName).Principal
        $user = $principal.UserId  # S-1-5-19, or a name for it ('LOCAL SERVICE', 'NT AUTHORITY\LOCAL SERVICE')
        if ($user -notmatch '^S-1-') {
            $user = (New-Object Security.Principal.NTAccount($user)).Translate([Security.Principal.SecurityIdentifier]).Value
        }
        $user | Should -Be 'S-1-5-19'
        "$($principal.ProcessTokenSidType)" | Should -BeIn @('Unrestricted', '1')  # MSFT_TaskPrincipal2: 1 Unrestricted
        "$($principal.RunLevel)" | Should -Be 'Limited'
        (@($principal.RequiredPrivilege) -join ',') | Should -Be 'SeChangeNotifyPrivilege'
    }
    It 'has the task SID gen-bundle computes (the derivation is not documented)' {
        $ErrorActionPreference = 'Continue'
        $output = & "$env:SystemRoot\System32\schtasks.exe" /showsid /tn ($script:TaskPath + $script:TaskName) 2>&1 | Out-String
        $output | Should -Match ([regex]::Escape($script:Sid) + '(?![0-9-])')
    }
    It 'listens on 127.0.0.13:80 from its supervisor or worker, both LOCAL SERVICE' {
        $workers = @(Get-Worker)
        $workers.Count | Should -Be 1
        # GetExtendedTcpTable names the process that bound the socket: the supervisor, which shared it.
        @($script:Supervisor, $workers[0].ProcessId) | Should -Contain $script:Listener[0].OwningProcess
        foreach ($id in @($script:Supervisor, $workers[0].ProcessId)) {
            $process = Get-CimInstance -ClassName Win32_Process -Filter "ProcessId = $id"
            (Invoke-CimMethod -InputObject $process -MethodName GetOwnerSid).Sid | Should -Be 'S-1-5-19' -Because $process.CommandLine
        }
    }
    It 'holds its pipe: an administrator cannot serve an instance of it' {
        # The broker's instances allow the most instances there are (255): the same number here, so
        # that only the pipe's DACL (no FILE_CREATE_PIPE_INSTANCE but for SYSTEM and the task SID) refuses.
        $made = $null
        $refusal = $null
        try {
            $made = New-Object System.IO.Pipes.NamedPipeServerStream('gen-bundle-py', 'InOut', [System.IO.Pipes.NamedPipeServerStream]::MaxAllowedServerInstances)
        } catch {
            $refusal = $_.Exception.GetBaseException()
        }
        if ($null -ne $made) { $made.Dispose() }
        $made | Should -BeNullOrEmpty
        $refusal | Should -BeOfType ([UnauthorizedAccessException])
    }
    It 'registers the runner''s own server; from session 0 it refuses it, as the design says' {
        $state = Join-Path $script:Work 'state'
        $notebooks = Join-Path $script:Work 'notebooks'
        [void][IO.Directory]::CreateDirectory($state)
        [void][IO.Directory]::CreateDirectory($notebooks)
        Set-Content -LiteralPath (Join-Path $notebooks 'gen-bundle-marker.txt') -Value 'the runner''s own server'
        $env:GB_STATE = $state  # the server's settings read their state folder from it
        $arguments = '-m notebook --no-browser "--config=' + (Join-Path $script:Staged 'server_config.py') + '" "--ServerApp.root_dir=' + $notebooks + '"'
        $script:Server = Start-Process -FilePath $script:Python -ArgumentList $arguments -WorkingDirectory $script:Work -RedirectStandardOutput (Join-Path $script:Work 'server.out.log') -RedirectStandardError $script:ServerLog -PassThru
        $deadline = (Get-Date).AddSeconds(90)
        if ($script:Session -eq 0) {
            do {
                Start-Sleep -Seconds 1
                $refused = @(Get-BrokerEvent 201 | Where-Object { "$($_.reason)" -match 'session 0' })
            } until ($refused.Count -gt 0 -or $script:Server.HasExited -or (Get-Date) -gt $deadline)
            $refused.Count | Should -BeGreaterThan 0 -Because ((Get-Text $script:Log) + (Get-Text $script:ServerLog))
            Write-Host -Object 'This runner runs in session 0 (a service''s session): the broker refuses registrations from it (event 201, "session 0").'
        } else {
            do {
                Start-Sleep -Seconds 1
                $log = Get-Text $script:ServerLog
            } until ($log -match 'registered with the broker' -or $script:Server.HasExited -or (Get-Date) -gt $deadline)
            $log | Should -Match 'registered with the broker at http://py/' -Because ((Get-Text $script:Log) + $log)
            @(Get-BrokerEvent 200).Count | Should -BeGreaterThan 0
        }
    }
    It 'sends http://py/ from this session to this session''s server; from session 0, its own page' {
        $status = 0
        $body = ''
        try {
            $response = Invoke-WebRequest -Uri 'http://127.0.0.13/api/contents' -Headers @{ Host = 'py' } -UseBasicParsing -TimeoutSec 30
            $status = [int]$response.StatusCode
            $body = "$($response.Content)"
        } catch {
            if ($null -eq $_.Exception.Response) { throw }
            $status = [int]$_.Exception.Response.StatusCode  # Windows PowerShell 5.1 throws on 4xx and 5xx
            $body = "$($_.ErrorDetails.Message)"
        }
        if ($script:Session -eq 0) {
            $status | Should -Be 403 -Because $body
            $body | Should -Match 'proxy'  # "Through a proxy?": the connection comes from a service
        } else {
            $status | Should -Be 200 -Because $body
            @(($body | ConvertFrom-Json).content | ForEach-Object { $_.name }) | Should -Contain 'gen-bundle-marker.txt'
        }
    }
    It 'keeps the address while its worker restarts' {
        $worker = @(Get-Worker)
        $worker.Count | Should -Be 1
        Stop-Process -Id $worker[0].ProcessId -Force
        $bound = @()
        for ($attempt = 0; $attempt -lt 15; $attempt++) {
            foreach ($address in @('0.0.0.0', '127.0.0.13')) {
                if (Test-Bind $address) { $bound += $address }
            }
            Start-Sleep -Milliseconds 200
        }
        $bound | Should -BeNullOrEmpty
        $deadline = (Get-Date).AddSeconds(30)
        do {
            Start-Sleep -Milliseconds 500
            $next = @(Get-Worker | Where-Object { $_.ProcessId -ne $worker[0].ProcessId })
        } until ($next.Count -gt 0 -or (Get-Date) -gt $deadline)
        $next.Count | Should -Be 1 -Because (Get-Text $script:Log)
        @(Get-BrokerEvent 103).Count | Should -BeGreaterThan 0
        Test-Bind '127.0.0.13' | Should -BeFalse
        Test-Bind '0.0.0.0' | Should -BeFalse
        if ($script:Session -ne 0) {
            # The server saw its registration end (the worker held it) and registers again.
            $deadline = (Get-Date).AddSeconds(60)
            do {
                Start-Sleep -Seconds 1
                $count = ([regex]::Matches((Get-Text $script:ServerLog), 'registered with the broker at')).Count
            } until ($count -ge 2 -or (Get-Date) -gt $deadline)
            $count | Should -BeGreaterOrEqual 2 -Because (Get-Text $script:ServerLog)
        }
    }
    It 'writes its events to the Application log, source gen-bundle-broker' {
        # Decided: the event log, not the file. The Application log's channel access lets service
        # (NT AUTHORITY\SERVICE) and batch logons write; Task Scheduler starts a LOCAL SERVICE task
        # with a service logon. The source is not registered (install.ps1 will register it): the
        # event log takes an unknown source's events into the Application log under its name.
        # -FilterXPath, not -FilterHashtable's ProviderName, which Get-WinEvent resolves against
        # the registered providers only.
        $events = @(Get-WinEvent -LogName 'Application' -FilterXPath "*[System[Provider[@Name='gen-bundle-broker'] and EventID=100]]" -ErrorAction SilentlyContinue)
        $events.Count | Should -BeGreaterThan 0 -Because 'the broker logs event 100 when it holds the address'
        "$($events[0].Properties[0].Value)" | Should -Match '"event": 100'
    }
}

AfterAll {
    $ErrorActionPreference = 'Continue'
    if ($null -ne $script:Server -and -not $script:Server.HasExited) {
        Stop-Process -Id $script:Server.Id -Force -ErrorAction SilentlyContinue
    }
    Stop-ScheduledTask -TaskPath $script:TaskPath -TaskName $script:TaskName -ErrorAction SilentlyContinue
    Unregister-ScheduledTask -TaskPath $script:TaskPath -TaskName $script:TaskName -Confirm:$false -ErrorAction SilentlyContinue
    if (-not $script:TaskFolderWasThere) {
        try { $script:Scheduler.GetFolder('\').DeleteFolder('gen-bundle', 0) } catch { }
    }
    # The supervisor's worker ends with it (a job object); whatever is left of either ends here.
    Get-CimInstance -ClassName Win32_Process -Filter "Name = 'python.exe'" |
        Where-Object { "$($_.CommandLine)" -like '*py.broker.py*' } |
        ForEach-Object { Stop-Process -Id $_.ProcessId -Force -ErrorAction SilentlyContinue }
    Start-Sleep -Seconds 2
    Remove-Item -LiteralPath 'Env:\GB_STATE' -ErrorAction SilentlyContinue
    foreach ($level in $script:Made) {
        Remove-Item -LiteralPath $level -Recurse -Force -ErrorAction SilentlyContinue
    }
    Remove-Item -LiteralPath $script:Work -Recurse -Force -ErrorAction SilentlyContinue
}
