"""gen-bundle sign: Authenticode signatures on the bundle's PowerShell scripts (osslsigncode).

Signed scripts run where PowerShell requires them (AllSigned) and, where WDAC allows their
signer, in Full Language mode. The password of a PFX file comes from the environment or a
prompt and reaches osslsigncode through a pipe: never a command-line argument, which other
users of the build machine could read in the process list, nor a file.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import tempfile
from pathlib import Path

from .bundle import read_bundle
from .bundle_format import BUNDLE_JSON, SHA256SUMS, sums_of
from .check import examine
from .constants import SIGN_PASSWORD_VARIABLE
from .errors import SigningError
from .output import write_bundle
from .signature import PUBLISHER_FILE, SIGNED_SUFFIXES, SignatureEntry, find_tool, signature_entry, signed_manifest

PASSWORD_VARIABLE = SIGN_PASSWORD_VARIABLE
MAX_PASSWORD_BYTES = 4096  # a pipe holds 64 KiB; a password is far shorter


def _run(command: list[str], *, password: str | None = None, what: str) -> subprocess.CompletedProcess[str]:
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
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            env=environment,
            pass_fds=(read_end,) if read_end is not None else (),
        )
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
    pem = _run(
        [find_tool("openssl"), "pkcs12", "-in", str(pfx), "-clcerts", "-nokeys", "-passin", "file:{pass_fd}"],
        password=password or "",
        what=f"reading the certificate of {pfx}",
    ).stdout
    start = pem.find("-----BEGIN CERTIFICATE-----")
    end = pem.find("-----END CERTIFICATE-----")
    if start < 0 or end < 0:
        raise SigningError(f"{pfx} holds no certificate")
    return ssl.PEM_cert_to_DER_cert(pem[start : end + len("-----END CERTIFICATE-----")] + "\n")


def sign_bundle(
    folder: str | Path,
    *,
    pfx: str | Path | None = None,
    password: str | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    timestamp: str | None = None,
) -> SignatureEntry:
    """Sign every script and the engine of the bundle (SHA-256), add publisher.cer, record the signer in
    bundle.json, refresh SHA256SUMS; written atomically. Returns bundle.json's signature entry."""
    if (pfx is None) == (cert is None) or (cert is None) != (key is None):
        raise SigningError("give --pfx FILE, or --cert FILE with --key FILE")
    if timestamp is not None and not timestamp.startswith(("http://", "https://")):
        raise SigningError(f"--timestamp {timestamp!r}: a time-stamping server's http(s) URL")
    # Only what gen-bundle renders from bundle.json is signed: a script changed together with
    # SHA256SUMS in the folder would otherwise be signed with the organisation's key.
    bundle = read_bundle(folder)
    report, rendered = examine(bundle, verify=False)  # a bundle signed before is signed afresh
    problems = report.findings
    if problems:  # rendered is None only with a finding that says why
        named = ", ".join(sorted({finding.file for finding in problems}))
        raise SigningError(
            f"{folder} is not exactly what gen-bundle renders from its bundle.json ({named}: first, "
            f"{problems[0].file}: {problems[0].problem}); sign only the bundle that was reviewed "
            "(gen-bundle check lists every difference)"
        )
    der = _certificate_der(pfx=Path(pfx) if pfx else None, cert=Path(cert) if cert else None, password=password)
    assert rendered is not None  # examine renders whenever it finds nothing
    files = dict(rendered)  # the rendered, unsigned files, equal to the folder's but for signatures
    scripts = sorted(name for name in files if name.endswith(SIGNED_SUFFIXES))
    osslsigncode = find_tool("osslsigncode")
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
            # A PFX is always read with a password, an empty one when none is given (as openssl
            # reads it for the certificate above): never the placeholder itself.
            given = (password or "") if pfx is not None else password
            _run(command, password=given, what=f"signing {name}")
            files[name] = target.read_bytes()
    signature = signature_entry(der, scripts, timestamp)
    files[PUBLISHER_FILE] = der
    files[BUNDLE_JSON] = signed_manifest(files[BUNDLE_JSON], signature)
    files[SHA256SUMS] = sums_of(files)
    write_bundle(dict(sorted(files.items())), Path(folder), force=True)
    return signature
