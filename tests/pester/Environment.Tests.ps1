# Pester 5 tests of the bundle's own Python environment (--env) on real Windows: the engine's
# functions, loaded as an --env bundle's install.ps1 loads them, extract python-env.zip, wire it to the runner's Python, and
# swap environments only whole. They run on Windows (see .github/workflows/windows.yml); on
# Linux the test suite only parses them.
# $env:GEN_BUNDLE_ENV_OUT is a folder holding a bundle made with --env for the runner's
# Python ($env:pythonLocation, CPython 3.11).

BeforeAll {
    . (Join-Path $PSScriptRoot 'Engine.ps1')
    $script:Bundle = $env:GEN_BUNDLE_ENV_OUT
    Import-TestEngine -Bundle $script:Bundle -Script 'install.ps1'
    $script:ArchiveBytes = [IO.File]::ReadAllBytes((Join-Path $script:Bundle 'python-env.zip'))
}

Describe 'the environment of an --env bundle' {
    BeforeAll {
        # The bundle's own values (the engine has them from install.ps1), for the test to compare with.
        $script:EnvFolder = & (Get-Module -Name 'gen-bundle-*') { $EnvFolder }
        $script:EnvPythonVersion = & (Get-Module -Name 'gen-bundle-*') { $EnvPythonVersion }
        $script:PythonExe = & (Get-Module -Name 'gen-bundle-*') { $PythonExe }
    }
    BeforeEach {
        # RUNNER_TEMP is a long path; the profile's temp folder may be an 8.3 name (RUNNER~1).
        $temp = if ($env:RUNNER_TEMP) { $env:RUNNER_TEMP } else { [IO.Path]::GetTempPath() }
        $script:InstallDir = Join-Path $temp ('gen-bundle-env-' + [Guid]::NewGuid().ToString('N'))
        [void][IO.Directory]::CreateDirectory($script:InstallDir)
        Initialize-GenBundle -Caller $null -Values @{ InstallDir = $script:InstallDir }
    }
    AfterEach {
        Get-CimInstance -ClassName Win32_Process | Where-Object { $null -ne $_.ExecutablePath -and $_.ExecutablePath.StartsWith($script:InstallDir, [StringComparison]::OrdinalIgnoreCase) } |
            ForEach-Object { Stop-Process -Id $_.ProcessId -Force -ErrorAction SilentlyContinue }
        Start-Sleep -Seconds 1
        Remove-Item -LiteralPath $script:InstallDir -Recurse -Force -ErrorAction SilentlyContinue
    }

    It 'finds the runner''s Python fit, from its files, and names what is wrong otherwise' {
        @(Get-BasePythonProblem) | Should -BeNullOrEmpty
        Initialize-GenBundle -Caller $null -Values @{ EnvPythonVersion = '3.19' }
        $problem = @(Get-BasePythonProblem)
        Initialize-GenBundle -Caller $null -Values @{ EnvPythonVersion = $script:EnvPythonVersion }
        $problem.Count | Should -Be 1
        $problem[0] | Should -Match 'python319\.dll'
        $problem[0] | Should -Match 'python-3\.19\.<n>-amd64\.exe'
        Initialize-GenBundle -Caller $null -Values @{ PythonExe = (Join-Path $script:InstallDir 'no-python\python.exe') }
        $missing = @(Get-BasePythonProblem)
        Initialize-GenBundle -Caller $null -Values @{ PythonExe = $script:PythonExe }
        $missing[0] | Should -Match 'which is not there'
    }

    It 'extracts the archive through a staging folder, wires it, and its Python runs notebook' {
        Test-EnvironmentInPlace | Should -BeFalse
        $count = Install-Environment -Archive $script:ArchiveBytes
        $count | Should -BeGreaterThan 1000
        Test-EnvironmentInPlace | Should -BeTrue
        $envPath = Join-Path $script:InstallDir $script:EnvFolder
        Test-Path -LiteralPath (Join-Path $script:InstallDir ".$($script:EnvFolder).partial") | Should -BeFalse
        (Get-Content -LiteralPath (Join-Path $envPath 'pyvenv.cfg') -Raw) | Should -Match ([regex]::Escape('home = ' + (Split-Path -Parent $script:PythonExe)))
        $python = Join-Path $envPath 'Scripts\python.exe'
        $output = & $python -I -c 'import sys, notebook, winpty, zmq; print(sys.prefix); print(notebook.__file__)'
        $LASTEXITCODE | Should -Be 0
        $output[0] | Should -Be $envPath
        $output[1] | Should -BeLike "$envPath\Lib\site-packages\notebook\*"
    }

    It 'leaves an environment that a program runs from whole, and deletes it once it has ended' {
        Initialize-GenBundle -Caller $null -Values @{ EnvFolder = 'env-000000000000' }
        [void](Install-Environment -Archive $script:ArchiveBytes)
        Initialize-GenBundle -Caller $null -Values @{ EnvFolder = $script:EnvFolder }
        $old = Join-Path $script:InstallDir 'env-000000000000'
        @(Get-OldEnvironment) | Should -Be @($old)
        $files = @(Get-ChildItem -LiteralPath $old -Recurse -File).Count
        $process = Start-Process -FilePath (Join-Path $old 'Scripts\python.exe') -ArgumentList '-c', '"import time, zmq; time.sleep(120)"' -PassThru -WindowStyle Hidden
        Start-Sleep -Seconds 3
        Remove-EnvironmentFolder -Path $old | Should -BeFalse
        @(Get-ChildItem -LiteralPath $old -Recurse -File).Count | Should -Be $files
        Stop-Process -Id $process.Id -Force
        Get-CimInstance -ClassName Win32_Process | Where-Object { $null -ne $_.ExecutablePath -and $_.ExecutablePath.StartsWith($old, [StringComparison]::OrdinalIgnoreCase) } |
            ForEach-Object { Stop-Process -Id $_.ProcessId -Force -ErrorAction SilentlyContinue }
        Start-Sleep -Seconds 2
        Remove-EnvironmentFolder -Path $old | Should -BeTrue
        Test-Path -LiteralPath $old | Should -BeFalse
        @(Get-OldEnvironment) | Should -BeNullOrEmpty
    }

    It 'replaces an incomplete environment left by an interrupted run' {
        $envPath = Join-Path $script:InstallDir $script:EnvFolder
        [void][IO.Directory]::CreateDirectory((Join-Path $envPath 'Lib'))
        Test-EnvironmentInPlace | Should -BeFalse
        [void](Install-Environment -Archive $script:ArchiveBytes)
        Test-EnvironmentInPlace | Should -BeTrue
    }
}
