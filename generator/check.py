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
from pathlib import Path

from . import __version__
from .bundle import Bundle, read_bundle
from .bundle_format import BUNDLE_JSON, ENV_LOCK, SHA256SUMS, sums_bytes
from .errors import GenBundleError, NotInCache
from .report import Finding, Report
from .signature import (
    PUBLISHER_FILE,
    SIGNED_SUFFIXES,
    is_signed,
    signature_entry,
    signed_manifest,
    strip_signature,
    verify_signatures,
)


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
    from .render import render
    from .spec import build_spec

    spec = build_spec(**bundle.inputs)
    built = None
    if spec.env:
        lock = bundle.files.get(ENV_LOCK)
        if lock is None:
            raise GenBundleError(f"bundle.json asks for an environment, and the bundle has no {ENV_LOCK}")
        from .environment import build_environment_for  # here: only an --env bundle needs its code

        built = build_environment_for(
            spec, lock=lock.decode("utf-8"), lock_source=f"{bundle.path}/{ENV_LOCK}", offline=offline, cache=cache
        )
    return render(spec, env=built)


def check_bundle(
    folder: str | Path,
    *,
    ca: str | Path | None = None,
    signer: str | None = None,
    download: bool = False,
    cache: str | Path | None = None,
) -> Report:
    return examine(read_bundle(folder), ca=ca, signer=signer, download=download, cache=cache)[0]


def examine(
    bundle: Bundle,
    *,
    ca: str | Path | None = None,
    signer: str | None = None,
    download: bool = False,
    cache: str | Path | None = None,
    verify: bool = True,
) -> tuple[Report, dict[str, bytes] | None]:
    """The report on ``bundle``, and the unsigned files this gen-bundle renders from its bundle.json
    (None when they cannot be rendered). ``verify=False`` leaves the signatures unverified (sign
    replaces them)."""
    report = Report(str(bundle.path), bundle.version)
    report.findings += _sums_findings(bundle)
    rendered = _rendered(bundle, download=download, cache=cache)
    if isinstance(rendered, Finding):
        report.findings.append(rendered)
        return report, None
    expected, actual = dict(rendered), dict(bundle.files)
    signature = bundle.signature
    if signer is not None and (signature or {}).get("thumbprint") != signer.upper():
        report.findings.append(
            Finding(
                BUNDLE_JSON,
                f"signed by {(signature or {}).get('thumbprint', 'nobody')}, not by {signer.upper()} as --signer asks",
            )
        )
    if signature is not None:
        report.signed_by = str(signature.get("thumbprint"))
        if verify:
            report.findings += verify_signatures(bundle.files, signature, ca=ca)
        report.findings += _expect_signed(bundle, signature, expected, actual)
    else:
        report.findings += [
            Finding(name, "carries a signature, but bundle.json names no signer")
            for name, data in sorted(actual.items())
            if name.endswith(SIGNED_SUFFIXES) and is_signed(data)
        ]
    report.findings += _compared(expected, actual)
    return report, rendered


def _rendered(bundle: Bundle, *, download: bool, cache: str | Path | None) -> dict[str, bytes] | Finding:
    """What this gen-bundle renders from the bundle's bundle.json, or the finding that says why it cannot."""
    if bundle.version != __version__:
        return Finding(
            BUNDLE_JSON,
            f"made by gen-bundle {bundle.version}, not by this gen-bundle {__version__}: its files cannot be "
            f"re-rendered by this version (gen-bundle --from {bundle.path / BUNDLE_JSON} renders its inputs "
            "with this one; gen-bundle diff shows what changes)",
        )
    try:
        return expected_files(bundle, offline=not download, cache=cache)
    except NotInCache as exc:
        return Finding(
            BUNDLE_JSON, f"its inputs cannot be rendered: {exc} (check --download fetches the wheels {ENV_LOCK} names)"
        )
    except GenBundleError as exc:
        return Finding(BUNDLE_JSON, f"its inputs cannot be rendered: {exc}")


def _expect_signed(
    bundle: Bundle, signature: dict[str, object], expected: dict[str, bytes], actual: dict[str, bytes]
) -> list[Finding]:
    """Turn ``expected`` and ``actual`` into what a signed bundle must hold, in place: the scripts with
    their signature blocks set aside, bundle.json with the signer, publisher.cer, and SHA256SUMS in
    the form signing writes. The findings are those of the certificate."""
    findings = []
    for name, data in actual.items():
        if name.endswith(SIGNED_SUFFIXES):
            actual[name] = strip_signature(data)
    der = bundle.files.get(PUBLISHER_FILE)
    if der is not None:
        scripts = sorted(name for name in expected if name.endswith(SIGNED_SUFFIXES))
        timestamp = signature.get("timestamp")
        try:
            canonical = signature_entry(der, scripts, timestamp if isinstance(timestamp, str) else None)
            expected[BUNDLE_JSON] = signed_manifest(expected[BUNDLE_JSON], canonical)
        except GenBundleError as exc:
            findings.append(Finding(PUBLISHER_FILE, str(exc)))
        expected[PUBLISHER_FILE] = der
    # SHA256SUMS is refreshed by signing: it must list every file, in the form signing writes
    # (each file against its line was checked already), and nothing else.
    listed = bundle.sums()
    expected[SHA256SUMS] = sums_bytes({name: listed.get(name, "?") for name in set(bundle.files) - {SHA256SUMS}})
    return findings


def _compared(expected: dict[str, bytes], actual: dict[str, bytes]) -> list[Finding]:
    """Each file that is missing, extra or different, against what gen-bundle renders."""
    findings = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            findings.append(Finding(name, "missing: gen-bundle renders it from bundle.json"))
        elif name not in expected:
            findings.append(Finding(name, "not a file gen-bundle renders from bundle.json"))
        elif actual[name] != expected[name]:
            findings.append(Finding(name, "differs from what gen-bundle renders from bundle.json"))
    return findings
