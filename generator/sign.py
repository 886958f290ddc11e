"""gen-bundle sign: Authenticode signatures on the bundle's PowerShell scripts (osslsigncode).

Signed scripts run where PowerShell requires them (AllSigned) and, where WDAC allows their
signer, in Full Language mode. The password of a PFX file comes from the environment or a
prompt and reaches osslsigncode through a pipe: never a command-line argument, which other
users of the build machine could read in the process list, nor a file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

from .bundle import PUBLISHER_FILE, SIGNED_SUFFIXES, Bundle, read_bundle
from .check import Finding, inspect, signed_manifest
from .errors import GenBundleError
from .output import write_bundle
from .render import BUNDLE_JSON, SHA256SUMS, sums_of

PASSWORD_VARIABLE = "GEN_BUNDLE_SIGN_PASSWORD"
MAX_PASSWORD_BYTES = 4096  # a pipe holds 64 KiB; a password is far shorter


class SigningError(GenBundleError):
    """Signing or verifying failed; the bundle is left as it was."""


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        package = {"osslsigncode": "osslsigncode", "openssl": "openssl"}[name]
        raise SigningError(f"{name} is needed to sign and verify scripts (Debian: apt-get install {package})")
    return found


def _run(command: list[str], *, password: str | None = None, what: str) -> subprocess.CompletedProcess:
    """Run a tool; ``password`` is handed over through a pipe, named /dev/fd/N on its command line."""
    read_end = write_end = None
    try:
        if password is not None:
            if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES or "\n" in password:
                raise SigningError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes or holds a line break")
            read_end, write_end = os.pipe()
            command = [part.replace("{pass_fd}", f"/dev/fd/{read_end}") for part in command]
            os.write(write_end, password.encode("utf-8") + b"\n")
            os.close(write_end)
            write_end = None
        # The tools get no copy of the password in their environment either.
        environment = {key: value for key, value in os.environ.items() if key != PASSWORD_VARIABLE}
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment,
                              pass_fds=(read_end,) if read_end is not None else ())
    finally:
        for end in (read_end, write_end):
            if end is not None:
                os.close(end)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SigningError(f"{what} failed: " + " / ".join(detail))
    return done


def _certificate_der(*, pfx: Path | None, cert: Path | None, password: str | None) -> bytes:
    if cert is not None:
        try:
            return ssl.PEM_cert_to_DER_cert(cert.read_text(encoding="ascii"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise SigningError(f"--cert {cert}: not a PEM certificate ({exc})") from None
    pem = _run([_tool("openssl"), "pkcs12", "-in", str(pfx), "-clcerts", "-nokeys", "-passin", "file:{pass_fd}"],
               password=password or "", what=f"reading the certificate of {pfx}").stdout
    start = pem.find("-----BEGIN CERTIFICATE-----")
    end = pem.find("-----END CERTIFICATE-----")
    if start < 0 or end < 0:
        raise SigningError(f"{pfx} holds no certificate")
    return ssl.PEM_cert_to_DER_cert(pem[start : end + len("-----END CERTIFICATE-----")] + "\n")


def thumbprint(der: bytes) -> str:
    """The certificate's thumbprint as Windows shows it (SHA-1 of the DER bytes, upper case)."""
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - the identifier Windows uses, not a security hash


def _subject(der: bytes) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "cert.der"
        path.write_bytes(der)
        out = _run([_tool("openssl"), "x509", "-inform", "DER", "-in", str(path), "-noout", "-subject",
                    "-nameopt", "RFC2253"], what="reading the certificate's subject").stdout
    return out.strip().removeprefix("subject=").strip()


def sign_bundle(
    folder: str | Path, *, pfx: str | Path | None = None, password: str | None = None, cert: str | Path | None = None,
    key: str | Path | None = None, timestamp: str | None = None,
) -> dict:
    """Sign every script and the engine of the bundle (SHA-256), add publisher.cer, record the signer in
    bundle.json, refresh SHA256SUMS; written atomically. Returns bundle.json's signature entry."""
    if (pfx is None) == (cert is None) or (cert is None) != (key is None):
        raise SigningError("give --pfx FILE, or --cert FILE with --key FILE")
    if timestamp is not None and not timestamp.startswith(("http://", "https://")):
        raise SigningError(f"--timestamp {timestamp!r}: a time-stamping server's http(s) URL")
    # Only what gen-bundle renders from bundle.json is signed: a script changed together with
    # SHA256SUMS in the folder would otherwise be signed with the organisation's key.
    bundle = read_bundle(folder)
    report, rendered = inspect(bundle, verify=False)  # a bundle signed before is signed afresh
    problems = report.findings
    if problems:  # rendered is None only with a finding that says why
        named = ", ".join(sorted({finding.file for finding in problems}))
        raise SigningError(
            f"{folder} is not exactly what gen-bundle renders from its bundle.json ({named}: first, "
            f"{problems[0].file}: {problems[0].problem}); sign only the bundle that was reviewed "
            "(gen-bundle check lists every difference)"
        )
    der = _certificate_der(pfx=Path(pfx) if pfx else None, cert=Path(cert) if cert else None, password=password)
    files = dict(rendered)  # the rendered, unsigned files, equal to the folder's but for signatures
    scripts = sorted(name for name in files if name.endswith(SIGNED_SUFFIXES))
    osslsigncode = _tool("osslsigncode")
    with tempfile.TemporaryDirectory() as scratch:
        for name in scripts:
            source = Path(scratch) / name
            target = Path(scratch) / f"signed-{name}"
            source.write_bytes(files[name])
            command = [osslsigncode, "sign", "-h", "sha256"]
            if pfx is not None:
                command += ["-pkcs12", str(pfx), "-readpass", "{pass_fd}"]
            else:
                command += ["-certs", str(cert), "-key", str(key)]
                if password is not None:
                    command += ["-readpass", "{pass_fd}"]
            if timestamp is not None:
                command += ["-ts", timestamp]
            command += ["-in", str(source), "-out", str(target)]
            _run(command, password=password if (pfx is not None or password is not None) else None,
                 what=f"signing {name}")
            files[name] = target.read_bytes()
    signature = signature_entry(der, scripts, timestamp)
    files[PUBLISHER_FILE] = der
    files[BUNDLE_JSON] = signed_manifest(files[BUNDLE_JSON], signature)
    files[SHA256SUMS] = sums_of(files)
    write_bundle(dict(sorted(files.items())), Path(folder), force=True)
    return signature


def signature_entry(der: bytes, scripts: list[str], timestamp: str | None) -> dict:
    """bundle.json's record of the signer, all of it derived from the certificate and the scripts."""
    return {
        "thumbprint": thumbprint(der),
        "subject": _subject(der),
        "digest": "sha256",
        "timestamp": timestamp,
        "scripts": scripts,
        "certificate": PUBLISHER_FILE,
    }


def verify_signatures(bundle: Bundle, *, ca: str | Path | None = None) -> list[Finding]:
    """Each script's signature intact and made by the certificate bundle.json names.

    Trust in that certificate is the deploying organisation's decision (Trusted Publishers,
    a WDAC signer rule); by default it is taken as its own anchor here, so that a signature
    is checked against exactly the certificate the reviewer approved. --ca gives a root instead.
    """
    signature = bundle.signature or {}
    findings = []
    der = bundle.files.get(PUBLISHER_FILE)
    if der is None:
        return [Finding(PUBLISHER_FILE, "missing: bundle.json names a signer, and its certificate is not here")]
    if thumbprint(der) != signature.get("thumbprint"):
        findings.append(Finding(PUBLISHER_FILE, f"thumbprint {thumbprint(der)}, not {signature.get('thumbprint')} "
                                                "as bundle.json says"))
    osslsigncode = _tool("osslsigncode")
    with tempfile.TemporaryDirectory() as scratch:
        anchor = Path(ca) if ca else Path(scratch) / "publisher.pem"
        if ca is None:
            anchor.write_text(ssl.DER_cert_to_PEM_cert(der), encoding="ascii")
        for name in sorted(n for n in bundle.files if n.endswith(SIGNED_SUFFIXES)):
            path = Path(scratch) / name
            path.write_bytes(bundle.files[name])
            done = subprocess.run([osslsigncode, "verify", "-in", str(path), "-CAfile", str(anchor)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                findings.append(Finding(name, "its Authenticode signature does not verify (osslsigncode verify)"))
    return findings
