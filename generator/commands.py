"""The subcommands: check, engine, diff and sign, loaded when one is asked for.

Apart from generator/cli.py, which holds the group and its own options (the render): a run
that renders a bundle, as most do, does not build these commands' options (cli.BundleGroup
loads this module for a command's name, and for --help).
"""

from __future__ import annotations

import click

from . import __version__
from .constants import SIGN_PASSWORD_VARIABLE
from .errors import GenBundleError
from .exits import fail


@click.command()
@click.argument("folder", metavar="DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for a pipeline).")
@click.option(
    "--ca",
    metavar="FILE",
    help="A signed bundle: verify its signatures up to this root certificate "
    "(PEM) instead of the certificate the bundle names.",
)
@click.option(
    "--signer",
    metavar="THUMBPRINT",
    help="A signed bundle: the certificate thumbprint it must be signed with (as Windows shows it).",
)
@click.option(
    "--download",
    is_flag=True,
    help="A bundle with an environment: download the wheels its pylock.toml "
    "names that the cache lacks (by default nothing is fetched from addresses a bundle chose).",
)
def check(folder: str, as_json: bool, ca: str | None, signer: str | None, download: bool) -> None:
    """Is DIR exactly what was approved, and what this gen-bundle renders from its bundle.json?

    Every file is checked against SHA256SUMS, and bundle.json's inputs are rendered again
    and compared byte for byte (a signed bundle with its signature blocks set aside, and
    each signature verified). Exit 0: identical. 1: differences, listed. 2: DIR is not a bundle.
    """
    from .check import check_bundle

    try:
        report = check_bundle(folder, ca=ca, signer=signer, download=download)
    except GenBundleError as exc:  # NotABundle: exit 2
        fail(exc)
    click.echo(report.as_json() if as_json else report.as_text())
    raise SystemExit(0 if report.identical else 1)


@click.command()
@click.option(
    "--save",
    metavar="DIR",
    help="Also write the engine into DIR, to review it before any bundle (a "
    "different file of its name there is left alone: exit 1).",
)
def engine(save: str | None) -> None:
    """The engine every bundle of this version shares: its SHA-256 and file name.

    A reviewer who approved the engine once, in any bundle, recognises it in the next one by
    this SHA-256 (printed as sha256sum prints it): the bundle's README and bundle.json give the
    same. A signed bundle's engine has it once its signature block is set aside (gen-bundle
    check does that).
    """
    import hashlib

    from .render import engine as render_engine

    name, data = render_engine(__version__)
    if save is not None:
        from .output import write_file

        try:
            write_file(data, save, name)
        except GenBundleError as exc:
            fail(exc)
    click.echo(f"{hashlib.sha256(data).hexdigest()}  {name}")


@click.command()
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@click.option(
    "--verbatim", is_flag=True, help="Diff the files as they are, every line that quotes a changed input included."
)
def diff(old: str, new: str, verbatim: bool) -> None:
    """What changed from bundle OLD to bundle NEW, for the re-review.

    Inputs, generator version, the engine, files added, removed and renamed, the hosts block,
    the task's settings and the environment's packages in plain words; then a unified diff
    of each changed text file, the code first, taken after the new inputs' values are put
    into the old file (lines that differ only by them are counted, not shown); the engine's
    own diff last. Exit 0 (and no output) when identical, 1 when not, 2 for a folder that is
    not a bundle.
    """
    from .diff import diff_bundles

    try:
        lines = diff_bundles(old, new, verbatim=verbatim)
    except GenBundleError as exc:  # NotABundle: exit 2
        fail(exc)
    for line in lines:
        click.echo(line)
    raise SystemExit(1 if lines else 0)


@click.command()
@click.argument("folder", metavar="DIR")
@click.option(
    "--pfx",
    metavar="FILE",
    help=f"The signing certificate and key, PKCS#12. Password: {SIGN_PASSWORD_VARIABLE}, else asked for.",
)
@click.option("--cert", metavar="FILE", help="The signing certificate, PEM (with --key).")
@click.option("--key", metavar="FILE", help=f"Its private key, PEM (a password, if any: {SIGN_PASSWORD_VARIABLE}).")
@click.option(
    "--timestamp", metavar="URL", help="An RFC 3161 time-stamping server, so that signatures outlive the certificate."
)
def sign(folder: str, pfx: str | None, cert: str | None, key: str | None, timestamp: str | None) -> None:
    """Sign the bundle's PowerShell scripts (Authenticode, SHA-256) for AllSigned and WDAC.

    Adds publisher.cer (the certificate, for Trusted Publishers), records its thumbprint in
    bundle.json and refreshes SHA256SUMS; the folder is replaced atomically. The password is
    never a flag: it would land in shell history.
    """
    import os

    from .sign import PASSWORD_VARIABLE, sign_bundle

    password = os.environ.get(PASSWORD_VARIABLE)
    if pfx is not None and password is None:
        password = click.prompt(f"Password of {pfx}", hide_input=True, default="", show_default=False, err=True)
    try:
        signature = sign_bundle(folder, pfx=pfx, password=password, cert=cert, key=key, timestamp=timestamp)
    except GenBundleError as exc:  # NotABundle: exit 2
        fail(exc)
    click.echo(
        f"Signed {', '.join(signature['scripts'])} in {folder} as {signature['subject']} "
        f"(thumbprint {signature['thumbprint']}); SHA256SUMS refreshed.",
        err=True,
    )
