"""A certificate's thumbprint and subject, read from its DER without a tool: what a signed
bundle's record and the reviewer see of its signer, as Windows shows them.
"""

from __future__ import annotations

import hashlib

from .errors import SigningError


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
        raise SigningError(f"the certificate's subject cannot be read ({exc})") from None
    return ",".join(reversed(rdns))
