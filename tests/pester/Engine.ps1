# Loads a bundle's engine for the Pester suites as its scripts load it: the bytes that SHA256SUMS
# lists for the engine, checked, imported from a file, and handed the values a script of the
# bundle holds (its values block, read from the script), with the test's own on top.

function Import-TestEngine {
    param([string]$Bundle, [string]$Script, [hashtable]$Values = @{})
    $sums = [IO.File]::ReadAllText((Join-Path $Bundle 'SHA256SUMS'))
    if ($sums -notmatch '(?m)^([0-9a-f]{64})  (gen-bundle-[0-9a-z.+-]+\.psm1)$') {
        throw "SHA256SUMS in $Bundle names no engine"
    }
    $engine = Join-Path $Bundle $Matches[2]
    if ((Get-FileHash -LiteralPath $engine -Algorithm SHA256).Hash -ne $Matches[1]) {
        throw "$engine does not match SHA256SUMS"
    }
    $tokens = $null
    $errors = $null
    $ast = [System.Management.Automation.Language.Parser]::ParseFile((Join-Path $Bundle $Script), [ref]$tokens, [ref]$errors)
    if ($errors.Count -gt 0) {
        throw "$Script does not parse: $($errors[0].Message)"
    }
    $block = $ast.Find({ param($node) $node -is [System.Management.Automation.Language.AssignmentStatementAst] -and $node.Left.Extent.Text -eq '$Bundle' }, $false)
    $bundleValues = & ([scriptblock]::Create($block.Right.Extent.Text))
    Import-Module -Name $engine -Force -DisableNameChecking
    Initialize-GenBundle -Caller $null -Values ($bundleValues + @{ BundleRoot = $Bundle; ScriptName = $Script })
    Initialize-GenBundle -Caller $null -Values $Values
}
