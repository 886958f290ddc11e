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

function Get-ReceiptValue {
    # One value of the receipt (or of a line of the broker's log), or $null when it or that value is
    # missing (an older receipt has fewer): under Set-StrictMode a missing property would throw.
    param([object]$Receipt, [string]$Name)
    if ($null -eq $Receipt -or $null -eq $Receipt.PSObject.Properties[$Name]) {
        return $null
    }
    return $Receipt.$Name
}
