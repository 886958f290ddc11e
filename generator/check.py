"""gen-bundle check: is this folder exactly a bundle that this gen-bundle renders?

Two independent questions, both answered for every file:
1. Does each file match SHA256SUMS (what the reviewer's approval pins)?
2. Does this gen-bundle, given the inputs in bundle.json, render the same bytes?
   That catches what hashes cannot: a file changed together with its SHA256SUMS line.
A signed bundle is compared with its signature blocks set aside, and each signature is
verified (osslsigncode) against the certificate bundle.json names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .bundle import PUBLISHER_FILE, SIGNED_SUFFIXES, Bundle, is_signed, read_bundle, strip_signature
from .errors import GenBundleError, NotInCache
from .render import BUNDLE_JSON, ENV_LOCK, SHA256SUMS, manifest_bytes, sums_text


@dataclass(frozen=True)
class Finding:
    file: str
    problem: str


@dataclass
class Report:
    bundle: str
    bundle_version: str
    this_version: str = __version__
    signed_by: str | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.findings

    def as_json(self) -> str:
        return json.dumps(
            {
                "bundle": self.bundle,
                "identical": self.identical,
                "generator": {"bundle": self.bundle_version, "this": self.this_version},
                "signed_by": self.signed_by,
                "findings": [{"file": f.file, "problem": f.problem} for f in self.findings],
            },
            indent=2,
        )

    def as_text(self) -> str:
        if self.identical:
            signed = f", signed by {self.signed_by}" if self.signed_by else ""
            return (f"{self.bundle}: every file matches SHA256SUMS and is what gen-bundle {self.this_version} "
                    f"renders from bundle.json{signed}")
        lines = [f"{self.bundle}: {len(self.findings)} difference(s):"]
        lines += [f"  {f.file}: {f.problem}" for f in self.findings]
        return "\n".join(lines)


def _sums_findings(bundle: Bundle) -> list[Finding]:
    findings = []
    sums = bundle.sums()
    if SHA256SUMS not in bundle.files:
        return [Finding(SHA256SUMS, "missing")]
    for name, digest in sorted(sums.items()):
        data = bundle.files.get(name)
        if data is None:
            findings.append(Finding(name, "listed in SHA256SUMS but missing"))
        elif hashlib.sha256(data).hexdigest() != digest:
            findings.append(Finding(name, "differs from SHA256SUMS"))
    for name in sorted(set(bundle.files) - set(sums) - {SHA256SUMS}):
        findings.append(Finding(name, "not listed in SHA256SUMS"))
    for name in bundle.others:
        findings.append(Finding(name, "not a regular file: a bundle holds files only"))
    return findings


def expected_files(bundle: Bundle, *, offline: bool = True, cache: str | Path | None = None) -> dict[str, bytes]:
    """What this gen-bundle renders from the bundle's bundle.json (its environment from its own lock).

    Offline unless asked: the wheel addresses in a bundle's lock are the bundle's to choose,
    and checking a bundle must not make requests it picked. The wheels come from the cache.
    """
    from .api import build_env
    from .render import render
    from .spec import build_spec

    spec = build_spec(**bundle.inputs)
    built = None
    if spec.env:
        lock = bundle.files.get(ENV_LOCK)
        if lock is None:
            raise GenBundleError(f"bundle.json asks for an environment, and the bundle has no {ENV_LOCK}")
        built = build_env(spec, lock=lock.decode("utf-8"), lock_source=f"{bundle.path}/{ENV_LOCK}",
                          offline=offline, cache=cache)
    return render(spec, env=built)


def signed_manifest(rendered: bytes, signature: dict) -> bytes:
    """bundle.json of a signed bundle: the rendered one, with the signer and publisher.cer added.

    sign writes it and check compares it byte for byte, so that nothing else (another key,
    a key written twice, another signer's name) can ride along in a signed bundle.json.
    """
    manifest = json.loads(rendered)
    manifest["signature"] = signature
    manifest["files"] = sorted([*manifest["files"], PUBLISHER_FILE])
    return manifest_bytes(manifest)


def check_bundle(folder: str | Path, *, ca: str | Path | None = None, signer: str | None = None,
                 download: bool = False, cache: str | Path | None = None) -> Report:
    return inspect(read_bundle(folder), ca=ca, signer=signer, download=download, cache=cache)[0]


def inspect(bundle: Bundle, *, ca: str | Path | None = None, signer: str | None = None, download: bool = False,
            cache: str | Path | None = None, verify: bool = True) -> tuple[Report, dict[str, bytes] | None]:
    """The report on ``bundle``, and the unsigned files this gen-bundle renders from its bundle.json
    (None when they cannot be rendered). ``verify=False`` leaves the signatures unverified (sign
    replaces them)."""
    folder = bundle.path
    report = Report(str(folder), bundle.version)
    report.findings += _sums_findings(bundle)
    if bundle.version != __version__:
        report.findings.append(Finding(
            BUNDLE_JSON,
            f"made by gen-bundle {bundle.version}, not by this gen-bundle {__version__}: its files cannot be "
            f"re-rendered by this version (gen-bundle --from {Path(folder) / BUNDLE_JSON} renders its inputs "
            "with this one; gen-bundle diff shows what changes)",
        ))
        return report, None
    try:
        rendered = expected_files(bundle, offline=not download, cache=cache)
    except NotInCache as exc:
        report.findings.append(Finding(BUNDLE_JSON, f"its inputs cannot be rendered: {exc} (check --download "
                                                    f"fetches the wheels {ENV_LOCK} names)"))
        return report, None
    except GenBundleError as exc:
        report.findings.append(Finding(BUNDLE_JSON, f"its inputs cannot be rendered: {exc}"))
        return report, None
    expected = dict(rendered)
    signature = bundle.signature
    actual = dict(bundle.files)
    if signer is not None and (signature or {}).get("thumbprint") != signer.upper():
        report.findings.append(Finding(BUNDLE_JSON, f"signed by {(signature or {}).get('thumbprint', 'nobody')}, "
                                                    f"not by {signer.upper()} as --signer asks"))
    if signature is not None:
        from .sign import signature_entry, verify_signatures

        report.signed_by = str(signature.get("thumbprint"))
        if verify:
            report.findings += verify_signatures(bundle, ca=ca)
        actual = {name: strip_signature(data) if name.endswith(SIGNED_SUFFIXES) else data
                  for name, data in actual.items()}
        der = bundle.files.get(PUBLISHER_FILE)
        if der is not None:
            scripts = sorted(name for name in expected if name.endswith(SIGNED_SUFFIXES))
            timestamp = signature.get("timestamp")
            try:
                canonical = signature_entry(der, scripts, timestamp if isinstance(timestamp, str) else None)
                expected[BUNDLE_JSON] = signed_manifest(expected[BUNDLE_JSON], canonical)
            except GenBundleError as exc:
                report.findings.append(Finding(PUBLISHER_FILE, str(exc)))
            expected[PUBLISHER_FILE] = der
        # SHA256SUMS is refreshed by signing: it must list every file, in the form signing writes
        # (each file against its line was checked above), and nothing else.
        listed = bundle.sums()
        expected[SHA256SUMS] = sums_text({name: listed.get(name, "?") for name in set(bundle.files) - {SHA256SUMS}})
    else:
        for name, data in actual.items():
            if name.endswith(SIGNED_SUFFIXES) and is_signed(data):
                report.findings.append(Finding(name, "carries a signature, but bundle.json names no signer"))
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            report.findings.append(Finding(name, "missing: gen-bundle renders it from bundle.json"))
        elif name not in expected:
            report.findings.append(Finding(name, "not a file gen-bundle renders from bundle.json"))
        elif actual[name] != expected[name]:
            report.findings.append(Finding(name, "differs from what gen-bundle renders from bundle.json"))
    return report, rendered
