# Pester 5 tests of the bundle's own Python environment (--env) on real Windows: the functions
# of an --env bundle's install.ps1 extract python-env.zip, wire it to the runner's Python, and
# swap environments only whole. They run on Windows (see .github/workflows/windows.yml); on
# Linux the test suite only parses them.
# $env:GEN_BUNDLE_ENV_OUT is a folder holding a bundle made with --env for the runner's
# Python ($env:pythonLocation, CPython 3.11).

BeforeAll {
    $script:Bundle = $env:GEN_BUNDLE_ENV_OUT
    $path = Join-Path $script:Bundle 'install.ps1'
    $tokens = $null
    $errors = $null
    $ast = [System.Management.Automation.Language.Parser]::ParseFile($path, [ref]$tokens, [ref]$errors)
    if ($errors.Count -gt 0) {
        throw "install.ps1 does not parse: $($errors[0].Message)"
    }
    # Load the script's functions without running its body.
    $functions = $ast.FindAll({ param($node) $node -is [System.Management.Automation.Language.FunctionDefinitionAst] }, $false)
    foreach ($function in $functions) {
        . ([scriptblock]::Create($function.Extent.Text))
    }
    # The bundle's own values, as its values block sets them.
    $script:Values = @{}
    $assignments = $ast.FindAll({ param($node) $node -is [System.Management.Automation.Language.AssignmentStatementAst] }, $false)
    foreach ($assignment in $assignments) {
        $name = $assignment.Left.Extent.Text.TrimStart('$')
        if (@('EnvFolder', 'EnvArchive', 'EnvArchiveSha256', 'EnvPythonVersion', 'PythonExe') -contains $name -and -not $script:Values.ContainsKey($name)) {
            $script:Values[$name] = [string]$assignment.Right.Extent.Text.Trim("'")
        }
    }
    $script:ArchiveBytes = [IO.File]::ReadAllBytes((Join-Path $script:Bundle 'python-env.zip'))
}

Describe 'the environment of an --env bundle' {
    BeforeAll {
        $script:EnvFolder = $script:Values['EnvFolder']
        $script:EnvArchive = $script:Values['EnvArchive']
        $script:EnvArchiveSha256 = $script:Values['EnvArchiveSha256']
        $script:EnvPythonVersion = $script:Values['EnvPythonVersion']
        $script:PythonExe = $script:Values['PythonExe']
    }
    BeforeEach {
        # RUNNER_TEMP is a long path; the profile's temp folder may be an 8.3 name (RUNNER~1).
        $temp = if ($env:RUNNER_TEMP) { $env:RUNNER_TEMP } else { [IO.Path]::GetTempPath() }
        $script:InstallDir = Join-Path $temp ('gen-bundle-env-' + [Guid]::NewGuid().ToString('N'))
        [void][IO.Directory]::CreateDirectory($script:InstallDir)
    }
    AfterEach {
        Get-CimInstance -ClassName Win32_Process | Where-Object { $null -ne $_.ExecutablePath -and $_.ExecutablePath.StartsWith($script:InstallDir, [StringComparison]::OrdinalIgnoreCase) } |
            ForEach-Object { Stop-Process -Id $_.ProcessId -Force -ErrorAction SilentlyContinue }
        Start-Sleep -Seconds 1
        Remove-Item -LiteralPath $script:InstallDir -Recurse -Force -ErrorAction SilentlyContinue
    }

    It 'finds the runner''s Python fit, from its files, and names what is wrong otherwise' {
        @(Get-BasePythonProblem) | Should -BeNullOrEmpty
        $script:EnvPythonVersion = '3.19'
        $problem = @(Get-BasePythonProblem)
        $script:EnvPythonVersion = $script:Values['EnvPythonVersion']
        $problem.Count | Should -Be 1
        $problem[0] | Should -Match 'python319\.dll'
        $problem[0] | Should -Match 'python-3\.19\.<n>-amd64\.exe'
        $script:PythonExe = Join-Path $script:InstallDir 'no-python\python.exe'
        $missing = @(Get-BasePythonProblem)
        $script:PythonExe = $script:Values['PythonExe']
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
        $current = $script:EnvFolder
        $script:EnvFolder = 'env-000000000000'
        [void](Install-Environment -Archive $script:ArchiveBytes)
        $script:EnvFolder = $current
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
