# ---- receipt: what install.ps1 did on this machine, read back by install.ps1 and uninstall.ps1 ----

function Read-Receipt {
    # The receipt in $StateDir (administrators only; the callers check that first), or $null when
    # it is missing or unreadable. It is UTF-8 without a BOM, which Windows PowerShell 5.1 would
    # read as ANSI unless told.
    if (-not (Test-Path -LiteralPath $ReceiptPath -PathType Leaf)) {
        return $null
    }
    try {
        return [IO.File]::ReadAllText($ReceiptPath, [Text.Encoding]::UTF8) | ConvertFrom-Json
    } catch {
        return $null
    }
}

function Write-ReceiptFile {
    # The receipt, as JSON (UTF-8 without a BOM), written beside it and swapped in: a run that ends
    # half-way leaves the old receipt or the new one, never one cut short, which would read as
    # none - and a receipt's mark (disabledByCheck) is what tells the tool's disable from an
    # administrator's.
    param([object]$Receipt)
    $bytes = (New-Object Text.UTF8Encoding($false)).GetBytes(($Receipt | ConvertTo-Json -Depth 4))
    Write-SwappedFile -Path $ReceiptPath -Bytes $bytes
}

function Write-SwappedFile {
    # $Bytes written beside $Path (.new) and swapped in: whoever reads $Path (a new broker worker,
    # the next run) finds the old file or the new one, never one cut short. The file keeps its ACL.
    param([string]$Path, [byte[]]$Bytes)
    $temp = $Path + '.new'
    [IO.File]::WriteAllBytes($temp, $Bytes)
    if (Test-Path -LiteralPath $Path -PathType Leaf) {
        # A backup name, not $null: PowerShell would hand File.Replace "" for it, which it refuses.
        [IO.File]::Delete($Path + '.old')
        [IO.File]::Replace($temp, $Path, $Path + '.old')
        [IO.File]::Delete($Path + '.old')
    } else {
        [IO.File]::Move($temp, $Path)
    }
}

function Get-ReceiptValue {
    # One value of the receipt (or of a line of the broker's log), or $null when it or that value is
    # missing (an older receipt has fewer): under Set-StrictMode a missing property would throw.
    param([object]$Receipt, [string]$Name)
    if ($null -eq $Receipt -or $null -eq $Receipt.PSObject.Properties[$Name]) {
        return $null
    }
    return $Receipt.$Name
}
