# Pester 5 tests that run the generated scripts for real on a Windows runner
# (elevated, as GitHub's hosted Windows runners are). See .github/workflows/windows.yml.
# $env:GEN_BUNDLE_OUT is a folder holding a bundle made with --name py --ip 127.0.0.13.

BeforeAll {
    $script:Bundle = $env:GEN_BUNDLE_OUT
    $script:Hosts = Join-Path $env:SystemRoot 'System32\drivers\etc\hosts'
    $script:Shell = (Get-Process -Id $PID).Path
    function Invoke-Bundle {
        param([string]$Script, [string[]]$Arguments = @(), [string]$Folder = $script:Bundle)
        $ErrorActionPreference = 'Continue'  # 5.1 would turn the child's stderr into an error
        $output = & $script:Shell -NoProfile -ExecutionPolicy Bypass -File (Join-Path $Folder $Script) @Arguments 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output | Out-String) }
    }
    $script:HostsBefore = [IO.File]::ReadAllBytes($script:Hosts)
    # The bundle's python.exe is not installed here: the broker its task starts cannot run, nothing
    # answers at http://py/, and install.ps1 ends with exit code 5 (it stops waiting once the task no
    # longer runs). Broker.Tests.ps1 runs the bundle's broker with the runner's own Python.
    $script:InstalledExit = 5
    # The runner image may bring its own %ProgramData%\jupyter, which users can write to and
    # install.ps1 would rightly refuse: set it aside for these tests.
    $script:JupyterShared = Join-Path $env:ProgramData 'jupyter'
    $script:JupyterAside = $script:JupyterShared + '.gen-bundle-test-aside'
    if (Test-Path -LiteralPath $script:JupyterShared) {
        Move-Item -LiteralPath $script:JupyterShared -Destination $script:JupyterAside
    }
    $script:Entry = Join-Path $env:ProgramData 'Microsoft\Windows\Start Menu\Programs\py notebook.lnk'
    # gen-bundle 0.1.0's per-user entry, with a lasting secret, as it was left in a profile.
    $script:Legacy = Join-Path $env:APPDATA 'Microsoft\Windows\Start Menu\Programs\py notebook.url'
    function Get-StartMenuSecret {
        # Every Start-menu entry, all users' and this user's, that holds a token.
        foreach ($folder in @((Join-Path $env:ProgramData 'Microsoft\Windows\Start Menu'), (Join-Path $env:APPDATA 'Microsoft\Windows\Start Menu'))) {
            Get-ChildItem -LiteralPath $folder -Recurse -File -Include '*.url', '*.lnk' -ErrorAction SilentlyContinue |
                Where-Object { [Text.Encoding]::Unicode.GetString([IO.File]::ReadAllBytes($_.FullName)) + [Text.Encoding]::ASCII.GetString([IO.File]::ReadAllBytes($_.FullName)) -match 'token=' }
        }
    }
}

Describe 'install.ps1 and uninstall.ps1 on this machine' {
    It 'changes nothing with -WhatIf, and says what it would do' {
        $temp = @(Get-ChildItem -LiteralPath ([IO.Path]::GetTempPath()) -Directory -Filter 'gen-bundle-*' | ForEach-Object { $_.Name })
        $run = Invoke-Bundle 'install.ps1' @('-WhatIf')
        # The engine is made from its checked bytes in memory: no copy in the temporary folder.
        @(Get-ChildItem -LiteralPath ([IO.Path]::GetTempPath()) -Directory -Filter 'gen-bundle-*' | Where-Object { $temp -notcontains $_.Name }) | Should -BeNullOrEmpty
        $run.ExitCode | Should -Be 0
        $run.Output | Should -Match 'What if'
        $run.Output | Should -Match '\+ 127\.0\.0\.13 py'
        [IO.File]::ReadAllBytes($script:Hosts) | Should -Be $script:HostsBefore
        Get-ScheduledTask -TaskPath '\gen-bundle\' -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\py') | Should -BeFalse
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle') | Should -BeFalse  # no folder, no ACL, no log
    }
    It 'refuses a SHA256SUMS other than the one -SumsSha256 names, and takes the right one' {
        $run = Invoke-Bundle 'install.ps1' @('-WhatIf', '-SumsSha256', ('0' * 64))
        $run.ExitCode | Should -Be 2 -Because $run.Output
        $run.Output | Should -Match 'SumsSha256'
        $sums = (Get-FileHash -LiteralPath (Join-Path $script:Bundle 'SHA256SUMS') -Algorithm SHA256).Hash
        (Invoke-Bundle 'install.ps1' @('-WhatIf', '-SumsSha256', $sums)).ExitCode | Should -Be 0
    }
    It 'refuses a bundle changed after review, with exit code 2' {
        $copy = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-tampered-' + [Guid]::NewGuid().ToString('N'))
        Copy-Item -LiteralPath $script:Bundle -Destination $copy -Recurse
        Add-Content -LiteralPath (Join-Path $copy 'hosts.txt') -Value '10.0.0.1 py'
        $run = Invoke-Bundle -Script 'install.ps1' -Folder $copy
        $run.ExitCode | Should -Be 2
        $run.Output | Should -Match 'does not match SHA256SUMS' 
        Remove-Item -LiteralPath $copy -Recurse -Force
    }
    It 'writes the plan of -WhatIf as JSON, each kind one of the README''s "Every change" table' {
        $plan = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-plan-' + [Guid]::NewGuid().ToString('N') + '.json')
        $run = Invoke-Bundle 'install.ps1' @('-WhatIf', '-Plan', $plan)
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $entries = @(Get-Content -LiteralPath $plan -Raw -Encoding UTF8 | ConvertFrom-Json)
        $readme = [IO.File]::ReadAllText((Join-Path $script:Bundle 'README.md'))
        $listed = @([regex]::Matches($readme, '(?m)^\| `([a-z-]+)` \|') | ForEach-Object { $_.Groups[1].Value })
        @($entries | Where-Object { $listed -notcontains $_.kind }) | Should -BeNullOrEmpty
        @($entries.kind) | Should -Contain 'hosts'
        @($entries.kind) | Should -Contain 'task'
        @($entries.kind) | Should -Contain 'broker-task'
        @($entries.kind) | Should -Contain 'broker-log-folder'
        @($entries | Where-Object { -not $_.undo }) | Should -BeNullOrEmpty
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle') | Should -BeFalse
        Remove-Item -LiteralPath $plan
    }
    It 'writes a relative -Plan below PowerShell''s current folder, not the process''s' {
        $folder = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-plan-here-' + [Guid]::NewGuid().ToString('N'))
        New-Item -ItemType Directory -Path $folder | Out-Null
        $install = Join-Path $script:Bundle 'install.ps1'
        # Set-Location moves PowerShell's folder; the child process's own stays the one it inherited.
        $ErrorActionPreference = 'Continue'  # 5.1 would turn the child's stderr into an error
        $output = & $script:Shell -NoProfile -ExecutionPolicy Bypass -Command "Set-Location -LiteralPath '$folder'; & '$install' -WhatIf -Plan 'plan.json'; exit `$LASTEXITCODE" 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($output | Out-String)
        Test-Path -LiteralPath (Join-Path $folder 'plan.json') -PathType Leaf | Should -BeTrue
        Remove-Item -LiteralPath $folder -Recurse -Force
    }
    It 'refuses an engine that is not the one the script names, even with SHA256SUMS rewritten' {
        $copy = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-engine-' + [Guid]::NewGuid().ToString('N'))
        Copy-Item -LiteralPath $script:Bundle -Destination $copy -Recurse
        $engine = Get-ChildItem -LiteralPath $copy -Filter 'gen-bundle-*.psm1'
        Add-Content -LiteralPath $engine.FullName -Value 'Write-Output planted'
        $sums = [IO.File]::ReadAllText((Join-Path $copy 'SHA256SUMS')) -replace '(?m)^[0-9a-f]{64}(?=  gen-bundle-)', (Get-FileHash -LiteralPath $engine.FullName -Algorithm SHA256).Hash.ToLowerInvariant()
        [IO.File]::WriteAllText((Join-Path $copy 'SHA256SUMS'), $sums)
        foreach ($script in 'install.ps1', 'uninstall.ps1') {
            $run = Invoke-Bundle -Script $script -Arguments @('-WhatIf') -Folder $copy
            $run.ExitCode | Should -Be 2 -Because $run.Output
            $run.Output | Should -Not -Match 'planted'
        }
        Remove-Item -LiteralPath $copy -Recurse -Force
    }
    It 'installs: files, hosts block, task, receipt; detect.ps1 sees it' {
        $run = Invoke-Bundle 'install.ps1'
        $run.ExitCode | Should -Be $script:InstalledExit -Because $run.Output
        $run.Output | Should -Match 'nothing answered at http://py:80/'
        $run.Output | Should -Match 'broker: started \\gen-bundle\\py-broker'
        # The broker's task: at boot, as LOCAL SERVICE with its own task SID and one privilege.
        $broker = Get-ScheduledTask -TaskPath '\gen-bundle\' -TaskName 'py-broker'
        $broker.Author | Should -Be 'gen-bundle'
        $user = $broker.Principal.UserId  # S-1-5-19, or a name for it ('LOCAL SERVICE', 'NT AUTHORITY\LOCAL SERVICE')
        if ($user -notmatch '^S-1-') {
            $user = (New-Object Security.Principal.NTAccount($user)).Translate([Security.Principal.SecurityIdentifier]).Value
        }
        $user | Should -Be 'S-1-5-19'
        "$($broker.Principal.ProcessTokenSidType)" | Should -BeIn @('Unrestricted', '1')
        (@($broker.Principal.RequiredPrivilege) -join ',') | Should -Be 'SeChangeNotifyPrivilege'
        @($broker.Triggers)[0].CimClass.CimClassName | Should -Be 'MSFT_TaskBootTrigger'
        @($broker.Actions)[0].Arguments | Should -Match 'py\.broker\.py" serve '
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\py\py.broker.py') | Should -BeTrue
        # Its log folder: the task SID modifies, administrators and SYSTEM have full control, users nothing.
        $ErrorActionPreference = 'Continue'
        $sid = ((& "$env:SystemRoot\System32\schtasks.exe" /showsid /tn '\gen-bundle\py-broker' 2>&1 | Out-String) -split '\s+' | Where-Object { $_ -match '^S-1-5-87-' } | Select-Object -First 1)
        $rules = @((Get-Acl -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\state\py\broker')).GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier]))
        @($rules | ForEach-Object { $_.IdentityReference.Value } | Sort-Object -Unique) | Should -Be (@('S-1-5-18', 'S-1-5-32-544', $sid) | Sort-Object)
        # The task's process cannot start (no python.exe): detect.ps1 wants the broker running.
        (Invoke-Bundle 'detect.ps1').Output.Trim() | Should -BeNullOrEmpty
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\py\start-py.bat') | Should -BeTrue
        (Get-Content -LiteralPath $script:Hosts) -contains '127.0.0.13 py' | Should -BeTrue
        $task = Get-ScheduledTask -TaskPath '\gen-bundle\' -TaskName 'py'
        $task.Author | Should -Be 'gen-bundle'
        $task.Principal.RunLevel | Should -Be 'Limited'
        $action = @($task.Actions)[0]
        $action.Execute | Should -Be '%SystemRoot%\System32\conhost.exe'
        $action.WorkingDirectory | Should -Be '%ProgramFiles%\gen-bundle\py'
        $action.Arguments | Should -Match ' /c \.\\start-py\.bat$'
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\state\py\receipt.json') | Should -BeTrue
        $link = (New-Object -ComObject WScript.Shell).CreateShortcut($script:Entry)
        Test-Path -LiteralPath $script:Entry | Should -BeTrue
        $link.Arguments | Should -Be '/d /c .\start-py.bat open'
        $link.WorkingDirectory | Should -Be (Join-Path $env:ProgramFiles 'gen-bundle\py')
        @(Get-StartMenuSecret) | Should -BeNullOrEmpty
        $jupyterAcl = Get-Acl -LiteralPath $script:JupyterShared
        $jupyterAcl.GetOwner([Security.Principal.SecurityIdentifier]).Value | Should -Be 'S-1-5-32-544'
        $jupyterAcl.AreAccessRulesProtected | Should -BeTrue
    }
    It 'keeps both hosts blocks with a second bundle installed, and this one''s when that one goes' {
        $second = $env:GEN_BUNDLE_SECOND_OUT  # --name py2 --ip 127.0.0.15
        $run = Invoke-Bundle -Script 'install.ps1' -Folder $second
        $run.ExitCode | Should -Be $script:InstalledExit -Because $run.Output
        $lines = @(Get-Content -LiteralPath $script:Hosts)
        $lines -contains '127.0.0.13 py' | Should -BeTrue
        $lines -contains '127.0.0.15 py2' | Should -BeTrue
        (Invoke-Bundle -Script 'uninstall.ps1' -Folder $second).ExitCode | Should -Be 0
        $lines = @(Get-Content -LiteralPath $script:Hosts)
        $lines -contains '127.0.0.13 py' | Should -BeTrue
        $lines -contains '127.0.0.15 py2' | Should -BeFalse
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\py\start-py.bat') | Should -BeTrue
    }
    It 'writes each run''s outcome to the Application event log' {
        $events = @(Get-WinEvent -FilterHashtable @{ LogName = 'Application'; ProviderName = 'gen-bundle'; Id = 1005 } -MaxEvents 1 -ErrorAction SilentlyContinue)
        $events.Count | Should -Be 1
        $events[0].Message | Should -Match "install\.ps1 of gen-bundle [0-9.]+ for 'py' ended with exit code 5"
    }
    It 'gives each folder level its own ACL: users read the install folder and its parent, not the state' {
        $root = Join-Path $env:ProgramFiles 'gen-bundle'
        foreach ($level in @(@($root, $true), @((Join-Path $root 'py'), $true), @((Join-Path $root 'py\start-py.bat'), $true),
                @((Join-Path $root 'state'), $false), @((Join-Path $root 'state\py'), $false))) {
            $users = @((Get-Acl -LiteralPath $level[0]).GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier]) |
                Where-Object { $_.IdentityReference.Value -eq 'S-1-5-32-545' -and $_.AccessControlType -eq 'Allow' -and
                    (([int64]$_.FileSystemRights -band 0x1200A9) -eq 0x1200A9) })
            ($users.Count -gt 0) | Should -Be $level[1] -Because $level[0]
        }
        (Get-Acl -LiteralPath $root).GetOwner([Security.Principal.SecurityIdentifier]).Value | Should -Be 'S-1-5-32-544'
    }
    It 'leaves a task an administrator disabled disabled, changes nothing, and exits 0' {
        Disable-ScheduledTask -TaskPath '\gen-bundle\' -TaskName 'py' | Out-Null
        $hosts = [IO.File]::ReadAllBytes($script:Hosts)
        $run = Invoke-Bundle 'install.ps1'
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $run.Output | Should -Match 'is disabled'
        (Get-ScheduledTask -TaskPath '\gen-bundle\' -TaskName 'py').State | Should -Be 'Disabled'
        [IO.File]::ReadAllBytes($script:Hosts) | Should -Be $hosts
        (Invoke-Bundle 'detect.ps1').Output | Should -Match 'is installed' -Because 'detect.ps1 agrees with install.ps1'
        $copy = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-detect-' + [Guid]::NewGuid().ToString('N'))
        [void][IO.Directory]::CreateDirectory($copy)
        Copy-Item -LiteralPath (Join-Path $script:Bundle 'detect.ps1') -Destination $copy
        (Invoke-Bundle -Script 'detect.ps1' -Folder $copy).Output | Should -Match 'is installed' -Because 'Intune runs it alone'
        Remove-Item -LiteralPath $copy -Recurse -Force
        Enable-ScheduledTask -TaskPath '\gen-bundle\' -TaskName 'py' | Out-Null
    }
    It 'changes nothing when run again' {
        $hosts = [IO.File]::ReadAllBytes($script:Hosts)
        $run = Invoke-Bundle 'install.ps1'
        $run.ExitCode | Should -Be $script:InstalledExit -Because $run.Output
        $run.Output | Should -Match 'already in place'
        $run.Output | Should -Match 'already registered'
        [IO.File]::ReadAllBytes($script:Hosts) | Should -Be $hosts
    }
    It 'runs -WhatIf without elevation on the installed PC: exit 0, and writes nothing' {
        # A standard user of this machine, made for this case: the README says -WhatIf runs without
        # elevation, where the admin-only state folders cannot be read.
        $name = 'gbwhatif' + (Get-Random -Maximum 99999)
        $password = 'Gb1!' + [Guid]::NewGuid().ToString('N')
        $ErrorActionPreference = 'Continue'
        & "$env:SystemRoot\System32\net.exe" user $name $password /add | Out-Null
        $LASTEXITCODE | Should -Be 0
        $copy = Join-Path $env:SystemDrive ('gen-bundle-whatif-' + [Guid]::NewGuid().ToString('N'))  # users may read it
        $out = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-whatif-' + [Guid]::NewGuid().ToString('N'))
        try {
            Copy-Item -LiteralPath $script:Bundle -Destination $copy -Recurse
            $state = @(Get-ChildItem -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle') -Recurse -Force | ForEach-Object { "$($_.FullName) $($_.LastWriteTimeUtc.Ticks)" })
            $hosts = [IO.File]::ReadAllBytes($script:Hosts)
            $credential = New-Object Management.Automation.PSCredential($name, (ConvertTo-SecureString $password -AsPlainText -Force))
            $process = Start-Process -FilePath $script:Shell -ArgumentList @('-NoProfile', '-ExecutionPolicy', 'Bypass', '-File', "`"$copy\install.ps1`"", '-WhatIf') -Credential $credential -WorkingDirectory $copy -RedirectStandardOutput "$out.out" -RedirectStandardError "$out.err" -Wait -PassThru
            $said = [IO.File]::ReadAllText("$out.out") + [IO.File]::ReadAllText("$out.err")
            $process.ExitCode | Should -Be 0 -Because $said
            $said | Should -Match 'What if'
            [IO.File]::ReadAllBytes($script:Hosts) | Should -Be $hosts
            @(Get-ChildItem -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle') -Recurse -Force | ForEach-Object { "$($_.FullName) $($_.LastWriteTimeUtc.Ticks)" }) | Should -Be $state
        } finally {
            & "$env:SystemRoot\System32\net.exe" user $name /delete | Out-Null
            Remove-Item -LiteralPath $copy -Recurse -Force -ErrorAction SilentlyContinue
            Remove-Item -LiteralPath "$out.out", "$out.err" -Force -ErrorAction SilentlyContinue
        }
    }
    It 'disables both tasks when a security check fails where it is installed, and enables them once it passes' {
        $folder = Join-Path $env:ProgramFiles 'gen-bundle\py'
        $ErrorActionPreference = 'Continue'
        & "$env:SystemRoot\System32\icacls.exe" $folder /grant '*S-1-5-32-545:(OI)(CI)M' | Out-Null
        try {
            $run = Invoke-Bundle 'install.ps1'
            $run.ExitCode | Should -Be 6 -Because $run.Output
            $run.Output | Should -Match 'can be changed by'
            foreach ($name in 'py', 'py-broker') {
                "$((Get-ScheduledTask -TaskPath '\gen-bundle\' -TaskName $name).State)" | Should -BeIn @('Disabled', '1')
            }
            (Invoke-Bundle 'detect.ps1').Output.Trim() | Should -BeNullOrEmpty
            $receipt = [IO.File]::ReadAllText((Join-Path $env:ProgramFiles 'gen-bundle\state\py\receipt.json')) | ConvertFrom-Json
            @($receipt.disabledByCheck.problems).Count | Should -BeGreaterThan 0
        } finally {
            & "$env:SystemRoot\System32\icacls.exe" $folder /remove:g '*S-1-5-32-545' | Out-Null
            & "$env:SystemRoot\System32\icacls.exe" $folder /grant '*S-1-5-32-545:(OI)(CI)RX' | Out-Null
        }
        $run = Invoke-Bundle 'install.ps1'
        $run.ExitCode | Should -Be $script:InstalledExit -Because $run.Output
        "$((Get-ScheduledTask -TaskPath '\gen-bundle\' -TaskName 'py').State)" | Should -Not -BeIn @('Disabled', '1')
    }
    It 'keeps both tasks off while the policy value says so, even with -Force' {
        $key = 'HKLM:\SOFTWARE\Policies\gen-bundle\py'
        New-Item -Path $key -Force | Out-Null
        New-ItemProperty -Path $key -Name 'Enabled' -PropertyType DWord -Value 0 -Force | Out-Null
        try {
            foreach ($arguments in @(@(), @('-Force'))) {
                $run = Invoke-Bundle 'install.ps1' $arguments
                $run.ExitCode | Should -Be 0 -Because $run.Output
                "$((Get-ScheduledTask -TaskPath '\gen-bundle\' -TaskName 'py').State)" | Should -BeIn @('Disabled', '1')
            }
            (Invoke-Bundle 'detect.ps1').Output | Should -Match 'is installed'
        } finally {
            Remove-Item -Path 'HKLM:\SOFTWARE\Policies\gen-bundle' -Recurse -Force
        }
        (Invoke-Bundle 'install.ps1').ExitCode | Should -Be $script:InstalledExit  # no -Force: the receipt says install.ps1 disabled them
        "$((Get-ScheduledTask -TaskPath '\gen-bundle\' -TaskName 'py').State)" | Should -Not -BeIn @('Disabled', '1')
    }
    It 'refuses to uninstall with a SHA256SUMS other than the one -SumsSha256 names, and changes nothing' {
        $run = Invoke-Bundle 'uninstall.ps1' @('-SumsSha256', ('0' * 64))
        $run.ExitCode | Should -Be 2 -Because $run.Output
        Get-ScheduledTask -TaskPath '\gen-bundle\' -TaskName 'py' | Should -Not -BeNullOrEmpty
        (Invoke-Bundle 'detect.ps1' @('-SumsSha256', ('0' * 64))).Output.Trim() | Should -BeNullOrEmpty
    }
    It 'uninstalls everything and gives back the hosts file byte for byte' {
        [void][IO.Directory]::CreateDirectory((Split-Path -Parent $script:Legacy))
        [IO.File]::WriteAllText($script:Legacy, "[InternetShortcut]`r`nURL=http://py/?token=$('a' * 43)`r`n")
        $run = Invoke-Bundle 'uninstall.ps1'
        $run.ExitCode | Should -Be 0 -Because $run.Output
        [IO.File]::ReadAllBytes($script:Hosts) | Should -Be $script:HostsBefore
        Get-ScheduledTask -TaskPath '\gen-bundle\' -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\py') | Should -BeFalse
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\state\py\receipt.json') | Should -BeFalse
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\state\py\logs') | Should -BeTrue  # the logs stay
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\state\py\broker') | Should -BeTrue  # the broker's too
        (Invoke-Bundle 'detect.ps1').Output.Trim() | Should -BeNullOrEmpty
        Test-Path -LiteralPath $script:Entry | Should -BeFalse
        # SYSTEM deletes nothing in a user's profile: the 0.1.0 entry stays until that user's server runs.
        Test-Path -LiteralPath $script:Legacy | Should -BeTrue
        Remove-Item -LiteralPath $script:Legacy -Force
        Test-Path -LiteralPath $script:JupyterShared | Should -BeFalse
        @(Get-StartMenuSecret) | Should -BeNullOrEmpty
    }
    It 'changes nothing when uninstall runs again' {
        (Invoke-Bundle 'uninstall.ps1').ExitCode | Should -Be 0
        [IO.File]::ReadAllBytes($script:Hosts) | Should -Be $script:HostsBefore
    }
    It 'leaves a %ProgramData%\jupyter that was there before the install' {
        [void][IO.Directory]::CreateDirectory($script:JupyterShared)
        $ErrorActionPreference = 'Continue'
        & "$env:SystemRoot\System32\icacls.exe" $script:JupyterShared /setowner '*S-1-5-32-544' | Out-Null
        & "$env:SystemRoot\System32\icacls.exe" $script:JupyterShared /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' '*S-1-5-32-545:(OI)(CI)RX' | Out-Null
        $run = Invoke-Bundle 'install.ps1'
        $run.ExitCode | Should -Be $script:InstalledExit -Because $run.Output
        (Invoke-Bundle 'uninstall.ps1').ExitCode | Should -Be 0
        Test-Path -LiteralPath $script:JupyterShared | Should -BeTrue
        Remove-Item -LiteralPath $script:JupyterShared -Recurse -Force
    }
    It 'renames aside a %ProgramData%\jupyter a user made, and no mutex a program made first blocks it' {
        [void][IO.Directory]::CreateDirectory($script:JupyterShared)
        $ErrorActionPreference = 'Continue'
        & "$env:SystemRoot\System32\icacls.exe" $script:JupyterShared /setowner '*S-1-5-32-545' | Out-Null  # as a user's own folder
        # 0.3.2's lock was this mutex, which any program could create first: held here, it blocks nothing now.
        $mutex = New-Object Threading.Mutex($true, 'Global\gen-bundle-py')
        try {
            $run = Invoke-Bundle 'install.ps1'
        } finally {
            $mutex.ReleaseMutex()
            $mutex.Dispose()
        }
        $run.ExitCode | Should -Be $script:InstalledExit -Because $run.Output
        $run.Output | Should -Match 'renamed it to'
        $aside = @(Get-ChildItem -LiteralPath $env:ProgramData -Directory -Filter 'jupyter.user-made-*')
        $aside.Count | Should -Be 1
        (Get-Acl -LiteralPath $aside[0].FullName).GetOwner([Security.Principal.SecurityIdentifier]).Value | Should -Be 'S-1-5-32-545'
        (Get-Acl -LiteralPath $script:JupyterShared).GetOwner([Security.Principal.SecurityIdentifier]).Value | Should -Be 'S-1-5-32-544'
        Test-Path -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle\state\run.lock') -PathType Leaf | Should -BeTrue
        (Invoke-Bundle 'uninstall.ps1').ExitCode | Should -Be 0
        Remove-Item -LiteralPath $aside[0].FullName -Recurse -Force
    }
    It 'refuses a logs folder that is a junction, and writes nothing through it' {
        # Users cannot create anything under %ProgramFiles%; an administrator's mistake can. The
        # state folder stays after uninstall (its logs): that level becomes a junction here.
        $logs = Join-Path $env:ProgramFiles 'gen-bundle\state\py\logs'
        $target = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-junction-' + [Guid]::NewGuid().ToString('N'))
        [void][IO.Directory]::CreateDirectory($target)
        Remove-Item -LiteralPath $logs -Recurse -Force
        New-Item -ItemType Junction -Path $logs -Target $target | Out-Null
        try {
            $run = Invoke-Bundle 'install.ps1'
            $run.ExitCode | Should -Be 4 -Because $run.Output
            $run.Output | Should -Match 'is a link'
            @(Get-ChildItem -LiteralPath $target -Force).Count | Should -Be 0
            Get-ScheduledTask -TaskPath '\gen-bundle\' -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $run = Invoke-Bundle 'uninstall.ps1'
            $run.ExitCode | Should -Be 0 -Because $run.Output
            $run.Output | Should -Match 'writes no log'
            @(Get-ChildItem -LiteralPath $target -Force).Count | Should -Be 0
        } finally {
            [IO.Directory]::Delete($logs)  # the junction itself, not its target
            Remove-Item -LiteralPath $target -Recurse -Force
            Remove-Item -LiteralPath (Join-Path $env:ProgramFiles 'gen-bundle') -Recurse -Force
        }
    }
}

AfterAll {
    if (Test-Path -LiteralPath $script:JupyterAside) {
        if (Test-Path -LiteralPath $script:JupyterShared) {
            Remove-Item -LiteralPath $script:JupyterShared -Recurse -Force
        }
        Move-Item -LiteralPath $script:JupyterAside -Destination $script:JupyterShared
    }
}
