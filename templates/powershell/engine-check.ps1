# The engine at $enginePath is this bundle's when its bytes, less a signature block in the form
# gen-bundle sign writes (Authenticode's: only base64 comment lines), have the SHA-256 above.
$engineBytes = [byte[]]@()  # assigned, not an if's output, which would unroll it (an empty one to $null)
if (Test-Path -LiteralPath $enginePath -PathType Leaf) { $engineBytes = [IO.File]::ReadAllBytes($enginePath) }
$signature = [regex]::Match([Text.Encoding]::GetEncoding(28591).GetString($engineBytes), '\r\n# SIG # Begin signature block\r\n(# [A-Za-z0-9+/]+=*\r\n)+# SIG # End signature block\r\n\z')
$unsignedLength = if ($signature.Success) { $signature.Index } else { $engineBytes.Length }
$engineIsOurs = [string]::Equals((Get-FileHash -InputStream (New-Object IO.MemoryStream($engineBytes, 0, $unsignedLength)) -Algorithm SHA256).Hash, $Bundle.EngineSha256, [StringComparison]::OrdinalIgnoreCase)
