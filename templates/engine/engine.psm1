# The engine's source, as a module: Import-Module ./templates/engine/engine.psm1 loads it from the
# tree. gen-bundle builds the engine a bundle carries, gen-bundle-<version>.psm1, from this folder:
# a header, values.ps1's values, then each part below, in this order, as it is
# (generator/engine_source.py). Each part defines functions and the few module-wide values they
# read; a part may use what an earlier one defines. A module-wide value a part sets is read in
# that part too: PSScriptAnalyzer lints one file at a time (docs/engine.md).
#
# Like the built engine, the module exports every function of its parts, and no variable.
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

. (Join-Path $PSScriptRoot 'values.ps1')
$EngineParts = @(
    'engine-core'
    'base'
    'integrity'
    'hosts-read'
    'hosts-edit'
    'task'
    'task-state'
    'task-match'
    'processes'
    'startmenu'
    'admin-only'
    'state-folder'
    'runlog'
    'receipt'
    'preflight'
    'safety'
    'probe'
    'install-steps'
    'uninstall-steps'
    'detect-steps'
    'environment-marker'
    'environment-remove'
    'environment'
)
foreach ($EnginePart in $EngineParts) {
    . (Join-Path $PSScriptRoot "$EnginePart.ps1")
}
Remove-Variable -Name 'EngineParts', 'EnginePart'
