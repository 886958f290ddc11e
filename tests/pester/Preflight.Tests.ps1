# Pester 5 tests of the engine's preflight helpers (loaded as install.ps1 loads it) that read the disk without changing it:
# jupyter_core's version from its METADATA, and the state folders' safety. They run on
# Windows (see .github/workflows/windows.yml); on Linux the test suite only parses them.
# $env:GEN_BUNDLE_OUT is a folder holding a bundle made with --name py --ip 127.0.0.13.

BeforeAll {
    . (Join-Path $PSScriptRoot 'Engine.ps1')
    Import-TestEngine -Bundle $env:GEN_BUNDLE_OUT -Script 'install.ps1'
}

Describe 'Get-JupyterCoreVersion' {
    BeforeEach {
        $script:Root = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-python-' + [Guid]::NewGuid().ToString('N'))
        Initialize-GenBundle -Caller $null -Values @{ PythonExe = (Join-Path $script:Root 'python.exe') }
    }
    AfterEach {
        Remove-Item -LiteralPath $script:Root -Recurse -Force -ErrorAction SilentlyContinue
    }
    It 'reads the version from a base install''s dist-info, and nothing when there is none' {
        [void][IO.Directory]::CreateDirectory((Join-Path $script:Root 'Lib\site-packages'))
        Get-JupyterCoreVersion | Should -BeNullOrEmpty
        $info = Join-Path $script:Root 'Lib\site-packages\jupyter_core-5.7.2.dist-info'
        [void][IO.Directory]::CreateDirectory($info)
        [IO.File]::WriteAllText((Join-Path $info 'METADATA'), "Metadata-Version: 2.3`r`nName: jupyter_core`r`nVersion: 5.7.2`r`n`r`nVersion: 9.9.9 (the body, not a header)`r`n")
        Get-JupyterCoreVersion | Should -Be '5.7.2'
    }
    It 'finds a virtual environment''s site-packages beside Scripts' {
        Initialize-GenBundle -Caller $null -Values @{ PythonExe = (Join-Path $script:Root 'Scripts\python.exe') }
        $info = Join-Path $script:Root 'Lib\site-packages\jupyter_core-5.8.1.dist-info'
        [void][IO.Directory]::CreateDirectory($info)
        [IO.File]::WriteAllText((Join-Path $info 'METADATA'), "Name: jupyter_core`nVersion: 5.8.1`n")
        Get-JupyterCoreVersion | Should -Be '5.8.1'
    }
}

Describe 'Test-VersionBelow' {
    It '<Version> below 5.8.1 is <Below>' -ForEach @(
        @{ Version = '5.7.2'; Below = $true }, @{ Version = '5.8.0'; Below = $true }, @{ Version = '5.8.0rc1'; Below = $true },
        @{ Version = '4.12'; Below = $true }, @{ Version = '5.8.1'; Below = $false }, @{ Version = '5.9'; Below = $false },
        @{ Version = '6.0.0'; Below = $false }, @{ Version = '5.10.0'; Below = $false }
    ) {
        Test-VersionBelow -Version $Version -Minimum '5.8.1' | Should -Be $Below
    }
}

Describe 'Get-PythonTreeProblem' {
    BeforeEach {
        $script:Root = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-tree-' + [Guid]::NewGuid().ToString('N'))
        New-AdminOnlyFolder -Path $script:Root
        foreach ($folder in @('Lib\site-packages\somepkg\deep', 'DLLs', 'Scripts')) {
            [void][IO.Directory]::CreateDirectory((Join-Path $script:Root $folder))
        }
        $python = Join-Path $script:Root 'python.exe'
        [IO.File]::WriteAllBytes($python, [byte[]](0x4D, 0x5A))
        Initialize-GenBundle -Caller $null -Values @{ PythonExe = $python }
    }
    AfterEach {
        Remove-Item -LiteralPath $script:Root -Recurse -Force -ErrorAction SilentlyContinue
    }
    It 'names a folder deep in site-packages that Users may change' {
        $deep = Join-Path $script:Root 'Lib\site-packages\somepkg\deep'
        $acl = Get-Acl -LiteralPath $deep
        $acl.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule((New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-545')), 'Modify', 'Allow')))
        Set-Acl -LiteralPath $deep -AclObject $acl
        @(Get-PythonTreeProblem) -join ' ' | Should -Match ([regex]::Escape($deep) + ' \(.*S-1-5-32-545')
    }
    It 'names a folder owned by an account, an administrator''s own included, and not one owned by Administrators' {
        $package = Join-Path $script:Root 'Lib\site-packages\somepkg'
        @(Get-PythonTreeProblem) -join ' ' | Should -Not -Match ([regex]::Escape($package) + ' \(')  # the runner's elevated token owns by Administrators
        $acl = Get-Acl -LiteralPath $package
        $acl.SetOwner([Security.Principal.WindowsIdentity]::GetCurrent().User)
        Set-Acl -LiteralPath $package -AclObject $acl
        @(Get-PythonTreeProblem) -join ' ' | Should -Match ([regex]::Escape($package) + ' \(S-1-5-21-[0-9-]+ \([^)]*\) as its owner\)')
    }
    It 'names a .pth file that Users may change' {
        $pth = Join-Path $script:Root 'Lib\site-packages\evil.pth'
        [IO.File]::WriteAllText($pth, "import os`n")
        $acl = Get-Acl -LiteralPath $pth
        $acl.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule((New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-545')), 'Modify', 'Allow')))
        Set-Acl -LiteralPath $pth -AclObject $acl
        @(Get-PythonTreeProblem) -join ' ' | Should -Match 'evil\.pth'
    }
    It 'takes this long on the runner''s own Python (printed, not judged)' {
        $python = Get-Command python.exe -ErrorAction SilentlyContinue
        if ($null -eq $python) {
            Set-ItResult -Skipped -Because 'no python.exe on PATH'
            return
        }
        Initialize-GenBundle -Caller $null -Values @{ PythonExe = $python.Source }
        $time = Measure-Command { $script:Found = @(Get-PythonTreeProblem) }
        Write-Host "Get-PythonTreeProblem on $($python.Source): $([int]$time.TotalMilliseconds) ms, $($script:Found.Count) findings"
    }
}

Describe 'Get-StateFolderProblem' {
    BeforeEach {
        $script:InstallRoot = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-state-' + [Guid]::NewGuid().ToString('N'))
        $script:StateRoot = Join-Path $script:InstallRoot 'state'
        $script:StateDir = Join-Path $script:StateRoot 'py'
        $script:StateLogDir = Join-Path $script:StateDir 'logs'
        Initialize-GenBundle -Caller $null -Values @{ InstallRoot = $script:InstallRoot; StateRoot = $script:StateRoot; StateDir = $script:StateDir; StateLogDir = $script:StateLogDir }
        $script:Target = $script:InstallRoot + '-target'
        [void][IO.Directory]::CreateDirectory($script:Target)
    }
    AfterEach {
        foreach ($folder in @($script:StateLogDir, $script:StateDir, $script:StateRoot)) {
            if ((Test-Entry $folder) -and ([IO.File]::GetAttributes($folder) -band [IO.FileAttributes]::ReparsePoint)) {
                [IO.Directory]::Delete($folder)
            }
        }
        Remove-Item -LiteralPath $script:InstallRoot, $script:Target -Recurse -Force -ErrorAction SilentlyContinue
    }
    It 'makes every level admin-only, and then finds nothing to refuse' {
        New-StateFolder
        @(Get-StateFolderProblem) | Should -BeNullOrEmpty
        (Get-Acl -LiteralPath $script:StateLogDir).GetOwner([Security.Principal.SecurityIdentifier]).Value | Should -Be 'S-1-5-32-544'
    }
    It 'refuses a junction at the <_> level, and New-StateFolder writes nothing through it' -ForEach @('root', 'bundle', 'logs') {
        $levels = @{ root = $script:StateRoot; bundle = $script:StateDir; logs = $script:StateLogDir }
        New-AdminOnlyFolder -Path $script:InstallRoot -UsersRead
        foreach ($parent in @($script:StateRoot, $script:StateDir, $script:StateLogDir)) {
            if ($parent -eq $levels[$_]) {
                break
            }
            New-AdminOnlyFolder -Path $parent
        }
        New-Item -ItemType Junction -Path $levels[$_] -Target $script:Target | Out-Null
        @(Get-StateFolderProblem) -join ' ' | Should -Match 'is a link'
        { New-StateFolder } | Should -Throw '*is a link*'
        @(Get-ChildItem -LiteralPath $script:Target -Force).Count | Should -Be 0
    }
    It 'refuses a folder that users may change' {
        [void][IO.Directory]::CreateDirectory($script:StateRoot)  # inherits the temp folder's ACL, with its parent
        $acl = Get-Acl -LiteralPath $script:StateRoot
        $acl.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule((New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-545')), 'Modify', 'Allow')))
        Set-Acl -LiteralPath $script:StateRoot -AclObject $acl
        @(Get-StateFolderProblem) -join ' ' | Should -Match 'can be changed by S-1-5-32-545'
    }
}
