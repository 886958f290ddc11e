"""The bundle's own file names and the byte forms of bundle.json and SHA256SUMS.

A leaf: render writes these forms, and check, sign, diff, output and the environment's
build read or name them, without importing the renderer for a string.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

BUNDLE_JSON = "bundle.json"
SHA256SUMS = "SHA256SUMS"
HOSTS_FILE = "hosts.txt"  # the lines install.ps1 puts in the hosts file
README = "README.md"  # what the reviewer reads first
# bundle.json's form: 1 (no "schema" key) before the engine; 2 adds "schema" and "engine".
MANIFEST_SCHEMA = 2

# The environment's files in a bundle made with --env (environment/build.py makes them).
ENV_LOCK = "pylock.toml"
ENV_ARCHIVE = "python-env.zip"
ENV_SBOM = "sbom.cdx.json"
ENV_FILES = (ENV_LOCK, ENV_ARCHIVE, ENV_SBOM)


def engine_file(version: str) -> str:
    """The engine's file name: the PowerShell module every bundle of this version shares."""
    return f"gen-bundle-{version}.psm1"


def manifest_bytes(manifest: Mapping[str, object]) -> bytes:
    """bundle.json's bytes: the one form the render, sign and check write and compare."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def sums_bytes(digests: Mapping[str, str]) -> bytes:
    """SHA256SUMS for file name -> SHA-256, in sha256sum's form and in name order."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests)).encode("ascii")


def sums_of(files: Mapping[str, bytes]) -> bytes:
    """SHA256SUMS for ``files``: every one but SHA256SUMS itself."""
    return sums_bytes({name: hashlib.sha256(data).hexdigest() for name, data in files.items() if name != SHA256SUMS})
