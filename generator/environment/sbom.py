"""The environment's software bill of materials, CycloneDX 1.6 JSON.

Deterministic like the rest of the bundle: no timestamp, and the serial number is
derived from the archive's SHA-256, so the same lock gives the same bytes.
"""

from __future__ import annotations

import json
import uuid
from email.message import Message
from typing import Any

from ..packages import normalize_package as normalize
from .lock import Pin

NOT_DECLARED = "not declared in the package's metadata"


def licences(metadata: Message) -> list[dict[str, Any]]:
    """The licence a wheel declares: its SPDX expression (PEP 639), else its classifiers, else its License field."""
    expression = metadata.get("License-Expression")
    if expression and expression.strip():
        return [{"expression": " ".join(expression.split())}]
    classifiers = [
        value.split("::")[-1].strip()
        for value in metadata.get_all("Classifier") or []
        if value.startswith("License ::") and value.split("::")[-1].strip() not in ("OSI Approved", "")
    ]
    if classifiers:
        return [{"license": {"name": name}} for name in sorted(set(classifiers))]
    field = (metadata.get("License") or "").strip()
    if field:
        first = field.splitlines()[0].strip()
        if len(field.splitlines()) > 1:
            first = f"{first[:80]} (full text in the package)"
        return [{"license": {"name": first[:100]}}]
    return [{"license": {"name": NOT_DECLARED}}]


def licence_text(metadata: Message) -> str:
    """One line for the README: the expression, or the licence names joined."""
    found = licences(metadata)
    return " AND ".join(item.get("expression") or item["license"]["name"] for item in found)


def purl(pin: Pin) -> str:
    return f"pkg:pypi/{normalize(pin.name)}@{pin.version}"


def cyclonedx(
    pins: tuple[Pin, ...],
    metadata: dict[str, Message],
    *,
    archive_sha256: str,
    name: str,
    description: str,
    generator_version: str,
) -> bytes:
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"gen-bundle:{archive_sha256}")
    document = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "gen-bundle", "version": generator_version}]},
            "component": {
                "type": "application",
                "bom-ref": "environment",
                "name": name,
                "description": description,
                "hashes": [{"alg": "SHA-256", "content": archive_sha256}],
            },
        },
        "components": [
            {
                "type": "library",
                "bom-ref": purl(pin),
                "name": pin.name,
                "version": pin.version,
                "purl": purl(pin),
                "hashes": [{"alg": "SHA-256", "content": pin.sha256}],
                "licenses": licences(metadata[pin.sha256]),
                "externalReferences": [{"type": "distribution", "url": pin.url}],
            }
            for pin in pins
        ],
        "dependencies": [{"ref": "environment", "dependsOn": [purl(pin) for pin in pins]}],
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
