"""The signature format of a signed bundle, in one place: Authenticode blocks in the scripts,
publisher.cer, and bundle.json's record of the signer.

sign writes it and check reads it; neither imports the other for it. Reading a signer's
thumbprint and subject needs no tool (generator/x509.py reads the certificate's DER);
verifying a signature needs osslsigncode.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TypedDict

from .bundle_format import manifest_bytes
from .errors import SigningError
from .report import Finding
from .x509 import subject, thumbprint

SIGNATURE_BEGIN = b"\r\n# SIG # Begin signature block\r\n"
SIGNATURE_END = b"# SIG # End signature block\r\n"
_SIGNATURE_LINE = re.compile(rb"# [A-Za-z0-9+/]+=*\r\n")
PUBLISHER_FILE = "publisher.cer"
# The files Authenticode signs and PowerShell checks: the scripts and the engine (a module).
SIGNED_SUFFIXES = (".ps1", ".psm1")


def strip_signature(data: bytes) -> bytes:
    """A script as it was before Authenticode signing appended its signature block.

    Only a block in the form signing writes is set aside: the two marker lines and, between
    them, nothing but comment lines of base64. Anything else in it (a line of code that
    PowerShell would run, a blank line) leaves the script as it is, so that it differs.
    """
    at = data.rfind(SIGNATURE_BEGIN)
    if at < 0 or not data.endswith(SIGNATURE_END):
        return data
    body = data[at + len(SIGNATURE_BEGIN) : len(data) - len(SIGNATURE_END)]
    lines = body.splitlines(keepends=True)
    if not lines or not all(_SIGNATURE_LINE.fullmatch(line) for line in lines):
        return data
    return data[:at]


def is_signed(data: bytes) -> bool:
    return strip_signature(data) != data


def find_tool(name: str) -> str:
    """A signing tool's path, or an error that says how to install it."""
    found = shutil.which(name)
    if found is None:
        raise SigningError(f"{name} is needed to sign and verify scripts (Debian: apt-get install {name})")
    return found


class SignatureEntry(TypedDict):
    """bundle.json's "signature": who signed which files, how."""

    thumbprint: str
    subject: str
    digest: str
    timestamp: str | None
    scripts: list[str]
    certificate: str


def signature_entry(der: bytes, scripts: list[str], timestamp: str | None) -> SignatureEntry:
    """bundle.json's record of the signer, all of it derived from the certificate and the scripts."""
    return {
        "thumbprint": thumbprint(der),
        "subject": subject(der),
        "digest": "sha256",
        "timestamp": timestamp,
        "scripts": scripts,
        "certificate": PUBLISHER_FILE,
    }


def signed_manifest(rendered: bytes, signature: SignatureEntry) -> bytes:
    """bundle.json of a signed bundle: the rendered one, with the signer and publisher.cer added.

    sign writes it and check compares it byte for byte, so that nothing else (another key,
    a key written twice, another signer's name) can ride along in a signed bundle.json.
    """
    manifest = json.loads(rendered)
    manifest["signature"] = signature
    manifest["files"] = sorted([*manifest["files"], PUBLISHER_FILE])
    return manifest_bytes(manifest)


def verify_signatures(
    files: dict[str, bytes], signature: dict[str, object], *, ca: str | Path | None = None
) -> list[Finding]:
    """Each script's signature intact and made by the certificate bundle.json names.

    Trust in that certificate is the deploying organisation's decision (Trusted Publishers,
    a WDAC signer rule); by default it is taken as its own anchor here, so that a signature
    is checked against exactly the certificate the reviewer approved. --ca gives a root instead.
    """
    findings = []
    der = files.get(PUBLISHER_FILE)
    if der is None:
        return [Finding(PUBLISHER_FILE, "missing: bundle.json names a signer, and its certificate is not here")]
    if thumbprint(der) != signature.get("thumbprint"):
        stated = signature.get("thumbprint")
        findings.append(Finding(PUBLISHER_FILE, f"thumbprint {thumbprint(der)}, not {stated} as bundle.json says"))
    import ssl  # here, not at the top: check and diff of an unsigned bundle need neither
    import subprocess
    import tempfile

    osslsigncode = find_tool("osslsigncode")
    with tempfile.TemporaryDirectory() as scratch:
        anchor = Path(ca) if ca else Path(scratch) / "publisher.pem"
        if ca is None:
            anchor.write_text(ssl.DER_cert_to_PEM_cert(der), encoding="ascii")
        for name in sorted(n for n in files if n.endswith(SIGNED_SUFFIXES)):
            path = Path(scratch) / name
            path.write_bytes(files[name])
            done = subprocess.run(
                [osslsigncode, "verify", "-in", str(path), "-CAfile", str(anchor)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                findings.append(Finding(name, "its Authenticode signature does not verify (osslsigncode verify)"))
    return findings
