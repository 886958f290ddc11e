# ==== environment: the bundle's own Python environment (--env) ====

# ---- environment: the bundle's own Python environment (--env), extracted beside the launcher ----
# python-env.zip holds the files of every wheel of pylock.toml, already installed (on the build
# machine) as a virtual environment. Here they are only extracted and wired to the base Python:
# nothing of the environment runs while it is installed, and nothing runs pip.

function Get-PeMachine {
    # The CPU an .exe is built for, from its PE header (0x8664: x64), read without running it.
    param([string]$Path)
    $stream = [IO.File]::OpenRead($Path)
    try {
        $reader = New-Object IO.BinaryReader($stream)
        if ($stream.Length -lt 64) {
            return 0
        }
        $stream.Position = 60
        $offset = $reader.ReadInt32()
        if ($offset -lt 0 -or $offset + 6 -gt $stream.Length) {
            return 0
        }
        $stream.Position = $offset
        if ($reader.ReadUInt32() -ne 0x00004550) {
            return 0  # no "PE\0\0" signature
        }
        return [int]$reader.ReadUInt16()
    } finally {
        $stream.Dispose()
    }
}

function Get-VenvLauncher {
    # The launcher a base install carries for virtual environments, as python -m venv copies it:
    # Lib\venv\scripts\nt\venvlauncher.exe (CPython 3.13 and later), else python.exe there.
    param([string]$Window)
    $nt = Join-Path (Split-Path -Parent $PythonExe) 'Lib\venv\scripts\nt'
    foreach ($name in @("venv$($Window)launcher.exe", "python$Window.exe")) {
        $path = Join-Path $nt $name
        if (Test-Path -LiteralPath $path -PathType Leaf) {
            return $path
        }
    }
    return $null
}

function Get-BasePythonProblem {
    # The base Python the environment is wired to, checked from its files, never run: python.exe,
    # the python3NN.dll of the CPython version the wheels are for, x64, and its venv launcher.
    $folder = Split-Path -Parent $PythonExe
    $minor = $EnvPythonVersion.Split('.')[1]
    $installer = "the python.org installer python-$EnvPythonVersion.<n>-amd64.exe for all users first (InstallAllUsers=1 TargetDir=`"$folder`")"
    if (-not (Test-Path -LiteralPath $PythonExe -PathType Leaf)) {
        return @("the environment runs on Python $EnvPythonVersion (64-bit) at $PythonExe, which is not there: deploy $installer")
    }
    $problems = @()
    if (-not (Test-Path -LiteralPath (Join-Path $folder "python3$minor.dll") -PathType Leaf)) {
        $found = @(Get-ChildItem -LiteralPath $folder -Filter 'python3*.dll' -ErrorAction SilentlyContinue | ForEach-Object { $_.Name }) -join ', '
        $problems += "the environment's wheels are for CPython $EnvPythonVersion, but $folder has no python3$minor.dll (it has: $(if ($found) { $found } else { 'none' })): deploy $installer, or make the bundle for the version installed there (--python-version)"
    }
    if ((Get-PeMachine $PythonExe) -ne 0x8664) {
        $problems += "$PythonExe is not a 64-bit (x64) Python, and the environment's wheels are win_amd64: deploy $installer"
    }
    if ($null -eq (Get-VenvLauncher)) {
        $problems += "$folder\Lib\venv\scripts\nt holds no venv launcher (venvlauncher.exe or python.exe), which the environment's Scripts\python.exe is a copy of: repair that Python with $installer"
    }
    return $problems
}

function Get-EnvironmentSpaceProblem {
    # Room for the environment beside the one in use (its files, and some to spare).
    $drive = New-Object IO.DriveInfo([IO.Path]::GetPathRoot($InstallRoot))
    $needed = $EnvUnpackedBytes + 64 * 1024 * 1024
    if ($drive.AvailableFreeSpace -lt $needed) {
        return "the environment needs $([math]::Ceiling($needed / 1048576)) MB on drive $($drive.Name), which has $([math]::Floor($drive.AvailableFreeSpace / 1048576)) MB free"
    }
}

function Get-OldEnvironment {
    # This bundle's environment folders but the current one: earlier locks' environments, and
    # what an interrupted run left.
    return @(Get-EnvironmentFolder | Where-Object { -not [string]::Equals((Split-Path -Leaf $_), $EnvFolder, [StringComparison]::OrdinalIgnoreCase) })
}

function Install-Environment {
    # Extracts the verified archive into a staging folder beside the final one, wires it to the
    # base Python as python -m venv would (pyvenv.cfg, the venv launcher as Scripts\python.exe),
    # writes the marker, and renames it into place: a server never sees a half-written environment.
    param([byte[]]$Archive)
    $final = Join-Path $InstallDir $EnvFolder
    $staging = Join-Path $InstallDir ".$EnvFolder.partial"
    foreach ($leftover in @($staging, $final)) {
        if ((Test-Path -LiteralPath $leftover) -and -not (Remove-EnvironmentFolder -Path $leftover)) {
            throw "$leftover is incomplete and in use by a running program: stop it, then run install.ps1 again"
        }
    }
    # SYSTEM and administrators write, users read and run: set on the folder itself, not
    # inherited, so that a right given to users on the install folder does not reach it.
    New-AdminOnlyFolder -Path $staging -UsersRead
    $root = [IO.Path]::GetFullPath($staging).TrimEnd('\') + '\'
    Add-Type -AssemblyName System.IO.Compression
    $zip = New-Object IO.Compression.ZipArchive((New-Object IO.MemoryStream(, $Archive)), [IO.Compression.ZipArchiveMode]::Read)
    $count = 0
    try {
        foreach ($entry in $zip.Entries) {
            $name = $entry.FullName
            if ($name.EndsWith('/', [StringComparison]::Ordinal)) {
                continue
            }
            # The archive was checked against SHA256SUMS; its names are checked all the same.
            if ($name.Contains('\') -or $name.Contains(':') -or $name.StartsWith('/', [StringComparison]::Ordinal) -or @($name.Split('/')) -contains '..') {
                throw "$EnvArchive holds the entry '$name', which is not a plain relative path"
            }
            $path = [IO.Path]::GetFullPath($root + $name.Replace('/', '\'))
            if (-not $path.StartsWith($root, [StringComparison]::OrdinalIgnoreCase)) {
                throw "$EnvArchive holds the entry '$name', which points outside the environment"
            }
            [void][IO.Directory]::CreateDirectory([IO.Path]::GetDirectoryName($path))
            $source = $entry.Open()
            try {
                $target = New-Object IO.FileStream($path, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write)
                try {
                    $source.CopyTo($target)
                } finally {
                    $target.Dispose()
                }
            } finally {
                $source.Dispose()
            }
            $count++
        }
    } finally {
        $zip.Dispose()
    }
    $baseFolder = Split-Path -Parent $PythonExe
    $version = [string](Get-Item -LiteralPath $PythonExe).VersionInfo.ProductVersion
    if ($version -notmatch '^3\.[0-9]+\.[0-9]+') {
        $version = $EnvPythonVersion
    }
    $config = "home = $baseFolder`r`ninclude-system-site-packages = false`r`nversion = $version`r`nexecutable = $PythonExe`r`n"
    [IO.File]::WriteAllText((Join-Path $staging 'pyvenv.cfg'), $config, (New-Object Text.UTF8Encoding($false)))
    [void][IO.Directory]::CreateDirectory((Join-Path $staging 'Scripts'))
    Copy-Item -LiteralPath (Get-VenvLauncher) -Destination (Join-Path $staging 'Scripts\python.exe')
    $windowed = Get-VenvLauncher -Window 'w'
    if ($null -ne $windowed) {
        Copy-Item -LiteralPath $windowed -Destination (Join-Path $staging 'Scripts\pythonw.exe')
    }
    $files = [IO.Directory]::GetFiles($staging, '*', [IO.SearchOption]::AllDirectories).Length + 1
    [IO.File]::WriteAllText((Join-Path $staging $EnvMarkerFile), "$EnvArchiveSha256 $files", [Text.Encoding]::ASCII)
    for ($attempt = 1; ; $attempt++) {
        try {
            [IO.Directory]::Move($staging, $final)  # an antivirus scanning the new files may hold one briefly
            break
        } catch {
            if ($attempt -ge 5) {
                throw
            }
            Start-Sleep -Seconds 2
        }
    }
    return $count
}

function Install-BundleEnvironment {
    # The bundle's Python environment, beside any earlier one: the launcher written next switches to it.
    $envPath = Join-Path $InstallDir $EnvFolder
    if ($Run.InPlace -and -not (Test-Path -LiteralPath (Join-Path $envPath $EnvMarkerFile) -PathType Leaf)) {
        # Found whole before the lock, and gone since: another run (uninstall.ps1) took it away.
        Stop-Bundle $ExitBusy "$envPath was taken away by another gen-bundle run while this one waited for the lock; the next run extracts it again."
    }
    if ($Run.InPlace) {
        Write-Output "environment: $envPath is already in place"
    } elseif (Confirm-Change -Kind 'environment' -Target $envPath -Action "Extract $EnvArchive there, through the staging folder .$EnvFolder.partial beside it, and wire it to $PythonExe" -Acl (Format-FolderSecurity (New-AdminOnlySecurity -UsersRead)) -Undo 'uninstall.ps1 deletes it') {
        New-InstallFolder
        if (@(Get-EnvironmentUser -Path $envPath).Count -gt 0) {
            # A damaged environment of this same lock that the servers or the broker still run from:
            # Windows refuses to rename it while they do. The launchers and servers are stopped, and
            # the broker, which Install-BrokerTask starts again (or Stop-BundleRun, when this fails).
            Stop-BundleProcess -Process @(Get-BundleProcess) -Reason "they run from $envPath, which is extracted again"
            Stop-BrokerForChange "while $envPath, which it runs from, is extracted again"
        }
        $extracted = Install-Environment -Archive $Run.Files[$EnvArchive]  # failed: Stop-BundleRun starts the broker again
        Write-Output "environment: extracted $extracted files to $envPath, wired to $PythonExe"
        $Run.Changed += "environment $envPath"
    }
}

function Remove-OldEnvironment {
    # Earlier environments of the bundle, each deleted whole, and only once no program runs from it.
    foreach ($old in @(Get-OldEnvironment)) {
        if (Confirm-Change -Kind 'environment-remove' -Target $old -Action 'Delete this earlier environment of the bundle, unless a program still runs from it' -Undo 'none needed: an earlier lock made it') {
            if (Remove-EnvironmentFolder -Path $old) {
                Write-Output "environment: deleted the earlier $old"
                $Run.Changed += "deleted $old"
            } else {
                Write-Warning "environment: $old is still in use (a server or kernel runs from it); it stays whole, and the next run of install.ps1 deletes it"
            }
        }
    }
}
