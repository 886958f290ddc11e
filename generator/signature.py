"""The signature format of a signed bundle, in one place: Authenticode blocks in the scripts,
publisher.cer, and bundle.json's record of the signer.

sign writes it and check reads it; neither imports the other for it. Reading a signer's
thumbprint and subject needs no tool (the certificate's DER is read here); verifying a
signature needs osslsigncode.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import TypedDict

from .bundle_format import manifest_bytes
from .errors import SigningError
from .report import Finding

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


def thumbprint(der: bytes) -> str:
    """The certificate's thumbprint as Windows shows it (SHA-1 of the DER bytes, upper case)."""
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - the identifier Windows uses, not a security hash


# ---- the subject, read from the certificate's DER --------------------------------------

# The attribute names RFC 4514 and OpenSSL's short names give; others are written as their OID.
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.42": "GN",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "2.5.4.15": "businessCategory",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}
# ASN.1 string types and how their bytes are text.
_STRING_CODECS = {
    0x0C: "utf-8",
    0x12: "ascii",
    0x13: "ascii",
    0x14: "latin-1",
    0x16: "ascii",
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",
    0x1E: "utf-16-be",
}


def _element(data: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: its tag, where its content starts, and where it ends."""
    if at + 2 > len(data):
        raise ValueError("truncated")
    tag, length, start = data[at], data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise ValueError("bad length")
        length, start = int.from_bytes(data[start : start + count], "big"), start + count
    if start + length > len(data):
        raise ValueError("truncated")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements inside [start, end): (tag, content start, content end, element start)."""
    found = []
    while start < end:
        tag, content, after = _element(data, start)
        found.append((tag, content, after, start))
        start = after
    if start != end:
        raise ValueError("overlong")
    return found


def _oid(raw: bytes) -> str:
    arcs, value = [], 0
    for byte in raw:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or raw[-1] & 0x80:
        raise ValueError("an empty or truncated OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def _escape(text: str) -> str:
    """An attribute value as RFC 2253 writes it (and OpenSSL's RFC2253 option): the special
    characters with a backslash, control characters and every byte of a non-ASCII one as \\XX."""
    out = []
    for index, char in enumerate(text):
        if char in ',+"\\<>;' or (char == "#" and index == 0) or (char == " " and index in (0, len(text) - 1)):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F or ord(char) > 0x7E:
            out.append("".join(f"\\{byte:02X}" for byte in char.encode("utf-8")))
        else:
            out.append(char)
    return "".join(out)


def subject(der: bytes) -> str:
    """The certificate's subject in RFC 2253's form (the last attribute first, as OpenSSL writes
    it with -nameopt RFC2253); read from the DER here, so checking a bundle needs no openssl."""
    try:
        ((cert_tag, cert_start, cert_end, _),) = [c for c in _children(der, 0, len(der))]
        tbs_tag, tbs_start, tbs_end, _ = _children(der, cert_start, cert_end)[0]
        fields = _children(der, tbs_start, tbs_end)
        if cert_tag != 0x30 or tbs_tag != 0x30:
            raise ValueError("not a certificate")
        if fields and fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        name_tag, name_start, name_end, _ = fields[4]  # serial, signature, issuer, validity, subject
        if name_tag != 0x30:
            raise ValueError("no subject")
        rdns = []
        for set_tag, set_start, set_end, _ in _children(der, name_start, name_end):
            if set_tag != 0x31:
                raise ValueError("not an RDN")
            parts = []
            for pair_tag, pair_start, pair_end, _ in _children(der, set_start, set_end):
                (oid_tag, oid_start, oid_end, _), (value_tag, value_start, value_end, value_at) = _children(
                    der, pair_start, pair_end
                )
                if pair_tag != 0x30 or oid_tag != 0x06:
                    raise ValueError("not an attribute")
                oid = _oid(der[oid_start:oid_end])
                codec = _STRING_CODECS.get(value_tag)
                if codec is None:
                    value = "#" + der[value_at:value_end].hex().upper()
                else:
                    value = _escape(der[value_start:value_end].decode(codec))
                parts.append(f"{_ATTRIBUTE_NAMES.get(oid, oid)}={value}")
            rdns.append("+".join(reversed(parts)))
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise SigningError(f"{PUBLISHER_FILE} is not a certificate whose subject can be read ({exc})") from None
    return ",".join(reversed(rdns))


# ---- bundle.json's record of the signer ----------------------------------------------------


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
