# Pester 5 test of the engine's source (templates/engine/), imported as a developer imports it:
# it loads under Set-StrictMode, and exports what the built engine of the bundle defines, every
# function and no variable. It runs on Windows (see .github/workflows/windows.yml); on Linux the
# test suite only parses it. $env:GEN_BUNDLE_OUT is a folder holding a bundle.

Describe 'templates/engine/engine.psm1' {
    It 'exports the functions of the built engine, and no variable' {
        $engine = Get-ChildItem -LiteralPath $env:GEN_BUNDLE_OUT -Filter 'gen-bundle-*.psm1'
        $tokens = $null
        $errors = $null
        $ast = [System.Management.Automation.Language.Parser]::ParseFile($engine.FullName, [ref]$tokens, [ref]$errors)
        $errors.Count | Should -Be 0
        $built = @($ast.FindAll({ param($node) $node -is [System.Management.Automation.Language.FunctionDefinitionAst] }, $false) | ForEach-Object { $_.Name } | Sort-Object)
        $source = Import-Module -Name (Join-Path $PSScriptRoot '..\..\templates\engine\engine.psm1') -Force -DisableNameChecking -PassThru
        try {
            $built.Count | Should -BeGreaterThan 100
            @($source.ExportedFunctions.Keys | Sort-Object) | Should -Be $built
            $source.ExportedVariables.Count | Should -Be 0
        } finally {
            Remove-Module -ModuleInfo $source
        }
    }
}
