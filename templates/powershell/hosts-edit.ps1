# ---- hosts, edit: the bundle's marked block put in or taken out, every other byte kept ----
$Utf8Bom = [string][char]0xEF + [char]0xBB + [char]0xBF

function Set-HostsBlock {
    # Returns $Text with the bundle's marked block replaced by $Block, in place,
    # or removed when $Block is empty. Lines keep their own endings; a UTF-8 BOM stays first.
    param([string]$Text, [string[]]$Block)
    $bom = ''
    if ($Text.StartsWith($Utf8Bom)) {
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
            if ($bare -ceq $HostsBegin) {
                $inside = $true
            } else {
                [void]$out.Append($line)
            }
            continue
        }
        if ($bare -cne $HostsEnd) {
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
            if ($current.EndsWith("`r`n")) {
                [void]$out.Remove($out.Length - 2, 2)
            } elseif ($current.EndsWith("`n")) {
                [void]$out.Remove($out.Length - 1, 1)
            }
        }
    }
    if ($inside) {
        throw [IO.InvalidDataException]::new("$HostsPath has the line '$HostsBegin' but no '$HostsEnd' after it; repair it by hand")
    }
    if ($Block.Count -gt 0 -and -not $written) {
        $current = $out.ToString()
        if ($current.Length -eq 0 -or $current.EndsWith("`n")) {
            [void]$out.Append(($Block -join $newline) + $newline)
        } else {
            # Keep the file's missing final newline: the block goes on new lines
            # and, like the file before, ends without one.
            [void]$out.Append($newline + ($Block -join $newline))
        }
    }
    return $bom + $out.ToString()
}

function Get-LineDiff {
    # The lines only in $Before ('-') and only in $After ('+'): what -WhatIf shows.
    param([string]$Before, [string]$After)
    $old = @($Before -split "`r?`n")
    $new = @($After -split "`r?`n")
    $lines = @()
    foreach ($line in $old) {
        if ($new -cnotcontains $line) {
            $lines += "- $line"
        }
    }
    foreach ($line in $new) {
        if ($old -cnotcontains $line) {
            $lines += "+ $line"
        }
    }
    return ($lines -join "`n")
}

function Write-HostsFile {
    # Writes a temporary file beside hosts and swaps it in (the old file stays
    # beside it as a backup), so a failure never leaves hosts half-written.
    # Each retry re-reads hosts first: another program may have changed it.
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
            if ($new -ceq $old) {
                return
            }
            [IO.File]::WriteAllBytes($temp, $Latin1.GetBytes($new))
            if ($exists) {
                $backup = $HostsPath + '.gen-bundle-' + (Get-Date -Format 'yyyyMMdd-HHmmss-fff') + '.bak'
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

function Clear-NameCache {
    if (Get-Command -Name Clear-DnsClientCache -ErrorAction SilentlyContinue) {
        Clear-DnsClientCache
    } else {
        & "$env:SystemRoot\System32\ipconfig.exe" /flushdns | Out-Null
    }
}
