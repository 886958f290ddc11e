# Pester 5 tests of the hosts-file surgery of a bundle's engine, loaded as install.ps1 loads it.
# They run on Windows (Windows PowerShell 5.1 and PowerShell 7), see
# .github/workflows/windows.yml; on Linux the test suite only parses them.
# $env:GEN_BUNDLE_OUT is a folder holding a bundle made with --name py --ip 127.0.0.13.

BeforeAll {
    . (Join-Path $PSScriptRoot 'Engine.ps1')
    $script:Bundle = $env:GEN_BUNDLE_OUT
    Import-TestEngine -Bundle $script:Bundle -Script 'install.ps1'
    # The test's own: what it compares with.
    $script:HostsBegin = '# BEGIN gen-bundle py'
    $script:KeepHostsBackups = 3
    $script:Latin1 = [Text.Encoding]::GetEncoding(28591)
    $script:Block = @([IO.File]::ReadAllLines((Join-Path $script:Bundle 'hosts.txt')))
    $script:OldBlock = @('# BEGIN gen-bundle py', '127.0.0.99 py', '# END gen-bundle py')

    function Get-Shape {
        # Bytes of a hosts file in one of the shapes found on real machines
        # (returned with a leading comma, so that an empty array stays an array).
        param([string]$Name)
        $ansiComment = [byte[]](0x23, 0x20, 0x63, 0x61, 0x66, 0xE9)  # "# caf\xe9" in Windows-1252
        switch ($Name) {
            'empty' { return ,[byte[]]@() }
            'crlf' { return ,[Text.Encoding]::ASCII.GetBytes("# comment`r`n127.0.0.1 localhost`r`n10.0.0.5 pypi.example py-other`r`n") }
            'lf' { return ,[Text.Encoding]::ASCII.GetBytes("# comment`n127.0.0.1 localhost`n") }
            'no-final-newline' { return ,[Text.Encoding]::ASCII.GetBytes("127.0.0.1 localhost`r`n10.0.0.6 server") }
            'utf8-bom' { return ,[byte[]]([byte[]](0xEF, 0xBB, 0xBF) + [Text.Encoding]::UTF8.GetBytes("# caf$([char]0xE9)`r`n127.0.0.1 localhost`r`n")) }
            'utf8' { return ,[Text.Encoding]::UTF8.GetBytes("# caf$([char]0xE9) $([char]0x2013)`r`n127.0.0.1 localhost`r`n") }
            'ansi' { return ,[byte[]]($ansiComment + [Text.Encoding]::ASCII.GetBytes("`r`n127.0.0.1 localhost`r`n")) }
            'old-block' { return ,[Text.Encoding]::ASCII.GetBytes((@('127.0.0.1 localhost') + $script:OldBlock + @('# after', '')) -join "`r`n") }
            'foreign' { return ,[Text.Encoding]::ASCII.GetBytes("127.0.0.1 localhost`r`n10.1.2.3 py`r`n") }
        }
    }
}

Describe 'Set-HostsBlock on <_>' -ForEach @('empty', 'crlf', 'lf', 'no-final-newline', 'utf8-bom', 'utf8', 'ansi', 'old-block') {
    BeforeAll {
        $script:Original = $script:Latin1.GetString((Get-Shape $_))
        $script:Installed = Set-HostsBlock -Text $script:Original -Block $script:Block
    }
    It 'adds exactly the block, once' {
        ([regex]::Matches($script:Installed, [regex]::Escape($script:Block[1]))).Count | Should -Be 1
        $script:Installed.Contains($script:Block[0]) | Should -BeTrue
        $script:Installed.Contains('127.0.0.99 py') | Should -BeFalse
    }
    It 'changes nothing on a second install' {
        Set-HostsBlock -Text $script:Installed -Block $script:Block | Should -BeExactly $script:Installed
    }
    It 'gives back the original bytes on uninstall' {
        $expected = $script:Original
        if ($_ -eq 'old-block') {
            # The old block was ours: uninstall takes it away with the new one.
            $expected = $script:Original.Replace((($script:OldBlock + @('')) -join "`r`n"), '')
        }
        Set-HostsBlock -Text $script:Installed -Block @() | Should -BeExactly $expected
    }
    It 'keeps every line that is not ours, in order' {
        $ours = @($script:Block) + @('127.0.0.99 py')
        $before = @($script:Original -split "`r?`n" | Where-Object { $_ -and $ours -notcontains $_ })
        $after = @($script:Installed -split "`r?`n" | Where-Object { $_ -and $ours -notcontains $_ })
        ($after -join '|') | Should -BeExactly ($before -join '|')
    }
}

Describe 'Get-HostsMapping' {
    It 'finds a foreign entry for the name' {
        $mapping = @(Get-HostsMapping -Text ($script:Latin1.GetString((Get-Shape 'foreign'))))
        $mapping.Count | Should -Be 1
        $mapping[0].Address | Should -Be '10.1.2.3'
    }
    It 'matches whole names only: pypi.example and py-other are not py' {
        @(Get-HostsMapping -Text ($script:Latin1.GetString((Get-Shape 'crlf')))).Count | Should -Be 0
    }
}

Describe 'Get-ByteDiff' {
    It 'shows a change of line endings, which a diff of lines would not' {
        $diff = Get-ByteDiff -Before "127.0.0.1 localhost`r`n" -After "127.0.0.1 localhost`n"
        $diff | Should -Match 'at byte 19 of 21'
        $diff | Should -Match '(?m)^- \\r\\n$'
        $diff | Should -Match '(?m)^\+ \\n$'
    }
    It 'shows a BOM and a missing final newline' {
        $bom = [string][char]0xEF + [char]0xBB + [char]0xBF
        $diff = Get-ByteDiff -Before ($bom + 'a') -After ($bom + "a`r`n" + $script:HostsBegin)
        $diff | Should -Match '(?m)^\+ \\r\\n$'
        $diff | Should -Match '(?m)^\+ # BEGIN gen-bundle py$'
        Get-ByteDiff -Before $bom -After '' | Should -Match '\\xEF\\xBB\\xBF'
    }
    It 'finds the one changed span of a hosts file of megabytes (its time: benchmarks, not here)' {
        $big = '0.0.0.0 blocked.example' * 100000
        $diff = Get-ByteDiff -Before ($big + "`r`n" + $big) -After ($big + "`r`n127.0.0.13 py`r`n" + $big)
        $diff | Should -Match "at byte $($big.Length + 2) of $(2 * $big.Length + 2)"
        $diff | Should -Match '(?m)^\+ 127\.0\.0\.13 py\\r\\n$'
    }
}

Describe 'Write-HostsFile' {
    BeforeEach {
        $script:Folder = Join-Path ([IO.Path]::GetTempPath()) ('gen-bundle-hosts-' + [Guid]::NewGuid().ToString('N'))
        [void][IO.Directory]::CreateDirectory($script:Folder)
        $script:HostsPath = Join-Path $script:Folder 'hosts'
        Initialize-GenBundle -Caller $null -Values @{ HostsFolder = $script:Folder; HostsPath = $script:HostsPath }
    }
    AfterEach {
        Get-ChildItem -LiteralPath $script:Folder -Force | ForEach-Object { $_.Attributes = 'Normal' }
        Remove-Item -LiteralPath $script:Folder -Recurse -Force
    }
    It 'swaps the file, keeps a backup and restores read-only and hidden' {
        $original = Get-Shape 'crlf'
        [IO.File]::WriteAllBytes($script:HostsPath, $original)
        [IO.File]::SetAttributes($script:HostsPath, [IO.FileAttributes]'ReadOnly, Hidden')
        Write-HostsFile -Block $script:Block | Out-Null
        $attributes = [IO.File]::GetAttributes($script:HostsPath)
        ($attributes -band [IO.FileAttributes]::ReadOnly) | Should -Be ([IO.FileAttributes]::ReadOnly)
        ($attributes -band [IO.FileAttributes]::Hidden) | Should -Be ([IO.FileAttributes]::Hidden)
        $backup = @(Get-ChildItem -LiteralPath $script:Folder -Force -Filter 'hosts.gen-bundle-*.bak')
        $backup.Count | Should -Be 1
        [IO.File]::ReadAllBytes($backup[0].FullName) | Should -Be $original
        @(Get-ChildItem -LiteralPath $script:Folder -Force -Filter '*.tmp').Count | Should -Be 0
    }
    It 'keeps only the newest backups of this bundle, and leaves other files alone' {
        [IO.File]::WriteAllBytes((Join-Path $script:Folder 'hosts.gen-bundle-lab-20200101-000000-000.bak'), [byte[]](1, 2))
        [IO.File]::WriteAllBytes((Join-Path $script:Folder 'hosts.bak'), [byte[]](3))
        for ($run = 1; $run -le 5; $run++) {
            # Another tool rewrites hosts at every boot; each install puts the block back.
            [IO.File]::WriteAllBytes($script:HostsPath, [Text.Encoding]::ASCII.GetBytes("127.0.0.1 localhost $($run)`r`n"))
            Write-HostsFile -Block $script:Block | Out-Null
            Start-Sleep -Milliseconds 20  # backups are named by time, to the millisecond
        }
        $ours = @(Get-ChildItem -LiteralPath $script:Folder -Force -Filter 'hosts.gen-bundle-py-*.bak' | Sort-Object Name)
        $ours.Count | Should -Be $script:KeepHostsBackups
        $script:Latin1.GetString([IO.File]::ReadAllBytes($ours[-1].FullName)) | Should -Be "127.0.0.1 localhost 5`r`n"
        Test-Path -LiteralPath (Join-Path $script:Folder 'hosts.gen-bundle-lab-20200101-000000-000.bak') | Should -BeTrue
        Test-Path -LiteralPath (Join-Path $script:Folder 'hosts.bak') | Should -BeTrue
    }
    It 'round-trips install and uninstall byte for byte' {
        $original = Get-Shape 'utf8-bom'
        [IO.File]::WriteAllBytes($script:HostsPath, $original)
        Write-HostsFile -Block $script:Block | Out-Null
        Write-HostsFile -Block @() | Out-Null
        [IO.File]::ReadAllBytes($script:HostsPath) | Should -Be $original
    }
    It 'refuses a UTF-16 hosts file and leaves it alone' {
        $original = [byte[]](0xFF, 0xFE) + [Text.Encoding]::Unicode.GetBytes("127.0.0.1 localhost`r`n")
        [IO.File]::WriteAllBytes($script:HostsPath, $original)
        # Read-HostsText refuses it with InvalidDataException: in the preflight, install.ps1 turns that
        # into exit $ExitPreflight. Write-HostsFile runs after other changes, so there it is a failure.
        { Read-HostsText } | Should -Throw -ExceptionType ([IO.InvalidDataException]) -ExpectedMessage '*is UTF-16*'
        { Write-HostsFile -Block $script:Block } | Should -Throw -ExceptionType ([InvalidOperationException]) -ExpectedMessage '*changed while this script ran*'
        [IO.File]::ReadAllBytes($script:HostsPath) | Should -Be $original
    }
}
