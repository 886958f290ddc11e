# ---- hosts, edit: the bundle's marked block put in or taken out, every other byte kept ----
$Utf8Bom = [string][char]0xEF + [char]0xBB + [char]0xBF

function Set-HostsBlock {
    # Returns $Text with the bundle's marked block replaced by $Block, in place,
    # or removed when $Block is empty. Lines keep their own endings; a UTF-8 BOM stays first.
    param([string]$Text, [string[]]$Block)
    $bom = ''
    if ($Text.StartsWith($Utf8Bom, [StringComparison]::Ordinal)) {
        $bom = $Utf8Bom
        $Text = $Text.Substring(3)
    }
    $newline = "`r`n"
    if ((-not $Text.Contains("`r`n")) -and $Text.Contains("`n")) {
        $newline = "`n"
    }
    $out = New-Object System.Text.StringBuilder
    $inside = $false
    $written = $false
    foreach ($line in [regex]::Split($Text, '(?<=\n)')) {
        if ($line.Length -eq 0) {
            continue
        }
        $bare = $line.TrimEnd([char[]]"`r`n")
        if (-not $inside) {
            if ([string]::Equals($bare, $HostsBegin, [StringComparison]::Ordinal)) {
                $inside = $true
            } else {
                [void]$out.Append($line)
            }
            continue
        }
        if (-not [string]::Equals($bare, $HostsEnd, [StringComparison]::Ordinal)) {
            continue
        }
        $inside = $false
        $ending = $line.Substring($bare.Length)
        if ($Block.Count -gt 0 -and -not $written) {
            [void]$out.Append(($Block -join $newline) + $ending)
            $written = $true
        } elseif ($ending.Length -eq 0) {
            # The block closed the file without a final newline: install added the
            # newline before it, so removing the block takes that newline back too.
            $current = $out.ToString()
            if ($current.EndsWith("`r`n", [StringComparison]::Ordinal)) {
                [void]$out.Remove($out.Length - 2, 2)
            } elseif ($current.EndsWith("`n", [StringComparison]::Ordinal)) {
                [void]$out.Remove($out.Length - 1, 1)
            }
        }
    }
    if ($inside) {
        throw [IO.InvalidDataException]::new("$HostsPath has the line '$HostsBegin' but no '$HostsEnd' after it; repair it by hand")
    }
    if ($Block.Count -gt 0 -and -not $written) {
        $current = $out.ToString()
        if ($current.Length -eq 0 -or $current.EndsWith("`n", [StringComparison]::Ordinal)) {
            [void]$out.Append(($Block -join $newline) + $newline)
        } else {
            # Keep the file's missing final newline: the block goes on new lines
            # and, like the file before, ends without one.
            [void]$out.Append($newline + ($Block -join $newline))
        }
    }
    return $bom + $out.ToString()
}

function Show-Bytes {
    # $Text (one character a byte, Latin-1) as readable text: \r, \n, \t and every byte outside
    # printable ASCII as \xHH; a new line after each \n, so that lines stay lines.
    param([string]$Text)
    $out = New-Object System.Text.StringBuilder
    foreach ($ch in $Text.ToCharArray()) {
        $code = [int]$ch
        if ($code -eq 13) {
            [void]$out.Append('\r')
        } elseif ($code -eq 10) {
            [void]$out.Append("\n`n")
        } elseif ($code -eq 9) {
            [void]$out.Append('\t')
        } elseif ($code -lt 32 -or $code -gt 126 -or $code -eq 92) {
            [void]$out.Append(('\x{0:X2}' -f $code))
        } else {
            [void]$out.Append($ch)
        }
    }
    return $out.ToString()
}

function Get-ByteDiff {
    # What -WhatIf shows: the one span of bytes that differs between $Before and $After (both
    # Latin-1, one character a byte), with line endings, BOM and final newline made visible. The
    # common start and end are found by halving (CompareOrdinal on spans), not a character at a
    # time: a hosts file of blocked sites has megabytes, and a loop in PowerShell took seconds.
    param([string]$Before, [string]$After)
    $shorter = [Math]::Min($Before.Length, $After.Length)
    $low = 0  # the longest common start found so far
    $high = $shorter
    while ($low -lt $high) {
        $middle = ($low + $high + 1) -shr 1  # halfway, rounded up
        if ([string]::CompareOrdinal($Before, 0, $After, 0, $middle) -eq 0) { $low = $middle } else { $high = $middle - 1 }
    }
    $start = $low
    $low = 0  # the longest common end, not reaching into the common start
    $high = $shorter - $start
    while ($low -lt $high) {
        $middle = ($low + $high + 1) -shr 1  # halfway, rounded up
        if ([string]::CompareOrdinal($Before, $Before.Length - $middle, $After, $After.Length - $middle, $middle) -eq 0) { $low = $middle } else { $high = $middle - 1 }
    }
    $endBefore = $Before.Length - $low
    $endAfter = $After.Length - $low
    $lines = @("at byte $start of $($Before.Length) (\r\n is a Windows line end, \xEF\xBB\xBF a UTF-8 BOM):")
    foreach ($change in @(@('-', $Before.Substring($start, $endBefore - $start)), @('+', $After.Substring($start, $endAfter - $start)))) {
        if ($change[1].Length -gt 0) {
            foreach ($line in ((Show-Bytes $change[1]).TrimEnd("`n") -split "`n")) {
                $lines += "$($change[0]) $line"
            }
        }
    }
    return ($lines -join "`n")
}

function Get-HostsChange {
    # The ShouldProcess text of a hosts change: how it is written, what it keeps and deletes, and
    # the byte diff under -WhatIf, where it is read (a real run does not pay for the diff: a hosts
    # file of blocked sites has megabytes).
    param([string]$Before, [string]$After)
    $text = 'Change the hosts file: a new file written beside it is swapped in'
    if (Test-Path -LiteralPath $HostsPath -PathType Leaf) {
        $text += ", the previous one kept beside it as hosts.gen-bundle-$BundleName-<time>.bak; its attributes ($([IO.File]::GetAttributes($HostsPath))) are cleared for the swap and set again"
        $old = @(Get-OldHostsBackup -Keep ($KeepHostsBackups - 1))
        if ($old.Count -gt 0) {
            $text += "; the backups past the newest $KeepHostsBackups are deleted: $(@($old | ForEach-Object { $_.Name }) -join ', ')"
        }
    }
    if ($WhatIfPreference) {
        return "$text. Byte for byte:`n" + (Get-ByteDiff -Before $Before -After $After)
    }
    return $text
}

function Write-HostsFile {
    # Writes a temporary file beside hosts and swaps it in (the old file stays
    # beside it as a backup), so a failure never leaves hosts half-written.
    # Each attempt reads hosts first, and again just before the swap: a program that wrote it
    # in between (a VPN client, another tool; other gen-bundle runs wait for the lock) would
    # otherwise lose its lines. Changed: the next attempt starts from its new text.
    param([string[]]$Block)
    $folder = Split-Path -Parent $HostsPath
    $existedBefore = Test-Path -LiteralPath $HostsPath -PathType Leaf
    for ($attempt = 1; ; $attempt++) {
        $temp = Join-Path $folder ('hosts.gen-bundle.' + [Guid]::NewGuid().ToString('N') + '.tmp')
        try {
            $exists = Test-Path -LiteralPath $HostsPath -PathType Leaf
            if ($existedBefore -and -not $exists) {
                # Never mistake a hosts file that went missing for an empty one.
                throw [System.IO.IOException]::new("$HostsPath is missing")
            }
            $old = Read-HostsText
            $new = Set-HostsBlock -Text $old -Block $Block
            if ([string]::Equals($new, $old, [StringComparison]::Ordinal)) {
                return
            }
            [IO.File]::WriteAllBytes($temp, $Latin1.GetBytes($new))
            if (-not [string]::Equals((Read-HostsText), $old, [StringComparison]::Ordinal)) {
                throw [IO.IOException]::new("$HostsPath changed while the new one was written")
            }
            if ($exists) {
                $backup = $HostsPath + '.gen-bundle-' + $BundleName + '-' + (Get-Date -Format 'yyyyMMdd-HHmmss-fff') + '.bak'
                $attributes = [IO.File]::GetAttributes($HostsPath)
                [IO.File]::SetAttributes($HostsPath, [IO.FileAttributes]::Normal)
                try {
                    [IO.File]::Replace($temp, $HostsPath, $backup)
                } finally {
                    if (-not (Test-Path -LiteralPath $HostsPath -PathType Leaf) -and (Test-Path -LiteralPath $backup -PathType Leaf)) {
                        # ReplaceFile moved hosts aside but could not put the new one in: restore it.
                        [IO.File]::Move($backup, $HostsPath)
                    }
                    if (Test-Path -LiteralPath $HostsPath -PathType Leaf) {
                        [IO.File]::SetAttributes($HostsPath, $attributes)
                    }
                }
                Write-Output "hosts: updated $HostsPath (the previous file is kept as $backup)"
                Remove-OldHostsBackup
            } else {
                [IO.File]::Move($temp, $HostsPath)
                Write-Output "hosts: created $HostsPath"
            }
            return
        } catch [IO.InvalidDataException] {
            # hosts was read again just now, after the script's earlier changes: another program
            # made it UTF-16 or broke the block since the preflight. A failure, not a refusal.
            throw [InvalidOperationException]::new("$HostsPath changed while this script ran: $($_.Exception.Message)")
        } catch [System.IO.IOException] {
            if ($attempt -ge 5) {
                throw
            }
            Write-Verbose "hosts could not be written ($($_.Exception.Message)); trying again"
            Start-Sleep -Milliseconds (250 * $attempt)
        } finally {
            if (Test-Path -LiteralPath $temp) {
                [IO.File]::Delete($temp)
            }
        }
    }
}

function Get-OldHostsBackup {
    # This bundle's backups beside hosts past the newest $Keep (not another bundle's: py-2's).
    param([int]$Keep)
    $pattern = '^hosts\.gen-bundle-' + [regex]::Escape($BundleName) + '-[0-9]{8}-[0-9]{6}-[0-9]{3}\.bak$'
    return @(Get-ChildItem -LiteralPath $HostsFolder -Filter ('hosts.gen-bundle-' + $BundleName + '-*.bak') -File |
        Where-Object { $_.Name -cmatch $pattern -and -not ($_.Attributes -band [IO.FileAttributes]::ReparsePoint) } |
        Sort-Object Name -Descending | Select-Object -Skip $Keep)
}

function Remove-OldHostsBackup {
    # This bundle's backups beside hosts, past the newest $KeepHostsBackups: another tool that
    # rewrites hosts at every boot would otherwise add one backup per boot, forever.
    foreach ($file in @(Get-OldHostsBackup -Keep $KeepHostsBackups)) {
        Remove-Item -LiteralPath $file.FullName -Force -ErrorAction SilentlyContinue
    }
}

function Clear-NameCache {
    # Best effort: the hosts file is already written, and Windows reads it again on its own; a stopped
    # DNS Client service (Clear-DnsClientCache then fails) must not turn the run into a failure.
    try {
        if (Get-Command -Name Clear-DnsClientCache -ErrorAction SilentlyContinue) {
            Clear-DnsClientCache
        } else {
            $ErrorActionPreference = 'Continue'  # Windows PowerShell 5.1 turns a native command's stderr into an error
            & "$env:SystemRoot\System32\ipconfig.exe" /flushdns | Out-Null
        }
    } catch {
        Write-Warning "hosts: the name cache was not cleared ($($_.Exception.Message)); Windows reads the hosts file again by itself"
    }
}
