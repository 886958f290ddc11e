"""The command line: a thin click layer over generator.api.generate.

Errors become exit codes here and only here: bad input exits 2 (click's
usage-error code), a refused or failed write exits 1; messages go to stderr.
The options take text and leave every check to the spec, so that a refusal
reads the same whichever rule it breaks.
"""

from __future__ import annotations

import click

from . import __version__
from .errors import GenBundleError, InvalidValue
from .spec import AUTH_MODES, DEFAULTS, SCOPES, WINDOW_MODES

EPILOG = """\b
Examples:
  gen-bundle --ip 127.0.0.13 --name py
  gen-bundle --ip 127.0.0.20 --name lab --port 8080 --out lab-bundle
  gen-bundle --ip 127.0.0.13 --name py --notebook-dir "D:\\Data\\Notebooks" --force
  gen-bundle --ip 127.0.0.13 --name py --scope user --user "CONTOSO\\alice"
  gen-bundle --ip 127.0.0.13 --name py --python "%LOCALAPPDATA%\\Programs\\Python\\Python313\\python.exe"
  gen-bundle --ip 127.0.0.13 --name py --env --package pandas --package matplotlib
  gen-bundle --ip 127.0.0.13 --name py --env --lock out/pylock.toml --out out-again

\b
Paths are Windows paths on the target machines. A path may start with
%USERPROFILE%, %LOCALAPPDATA%, %APPDATA%, %ProgramFiles% or %SystemDrive%,
expanded on the target; every other % is literal.
"""

OPTION_FLAGS = {
    "ip": "--ip",
    "name": "--name",
    "port": "--port",
    "notebook_dir": "--notebook-dir",
    "python": "--python",
    "auth": "--auth",
    "window": "--window",
    "scope": "--scope",
    "user": "--user",
    "env": "--env",
    "python_version": "--python-version",
    "packages": "--package",
    "requirements": "--requirements",
    "lock": "--lock",
    "offline": "--offline",
}


@click.command(
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100, "terminal_width": 100},
)
@click.option(
    "--ip", required=True, metavar="ADDRESS", help="Loopback address the server listens on, inside 127.0.0.0/8."
)
@click.option("--name", required=True, metavar="NAME", help="Host name for the browser (http://NAME/): one DNS label.")
@click.option(
    "--port", type=str, metavar="PORT", default=DEFAULTS["port"], show_default=True, help="TCP port of the server."
)
@click.option(
    "--notebook-dir",
    metavar="PATH",
    default=DEFAULTS["notebook_dir"],
    show_default=True,
    help="Folder the notebook server opens; created at start when missing.",
)
@click.option(
    "--python",
    metavar="PATH",
    default=DEFAULTS["python"],
    show_default=True,
    help="python.exe on the target machines, in an environment that has notebook installed; "
    "with --env, the base Python (installed for all users) that the bundle's environment uses.",
)
@click.option(
    "--auth",
    metavar="[" + "|".join(AUTH_MODES) + "]",
    default=DEFAULTS["auth"],
    show_default=True,
    help="token: each user's own secret, made on first start; one-click sign-in from the Start menu. "
    "none: no sign-in - anyone on the PC can run code as that user.",
)
@click.option(
    "--window",
    metavar="[" + "|".join(WINDOW_MODES) + "]",
    default=DEFAULTS["window"],
    show_default=True,
    help="hidden: no console window (conhost --headless). minimized: a minimized console window.",
)
@click.option(
    "--scope",
    metavar="[" + "|".join(SCOPES) + "]",
    default=DEFAULTS["scope"],
    show_default=True,
    help="machine: every user who logs on gets their own server. user: only the account given by --user.",
)
@click.option("--user", metavar="DOMAIN\\NAME", help="The account a --scope user bundle is for.")
@click.option(
    "--env",
    is_flag=True,
    help="Bring a locked Python environment with notebook (wheels for Windows x64, pinned by SHA-256), "
    "installed beside the launcher and wired to the base Python that --python names.",
)
@click.option(
    "--python-version",
    metavar="3.N",
    help="With --env: the CPython version of the target's base Python.  [default: read from --python, "
    "e.g. Python313 -> 3.13]",
)
@click.option(
    "--package",
    "packages",
    multiple=True,
    metavar="NAME[==VER]",
    help="With --env: a package to add to notebook (repeatable).",
)
@click.option("--requirements", metavar="FILE", help="With --env: a file of packages to add, one per line.")
@click.option(
    "--lock",
    metavar="FILE",
    help="With --env: build the environment from this pylock.toml (an earlier bundle's) instead of resolving anew.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="With --env: use only the cache (GEN_BUNDLE_CACHE_DIR, else ~/.cache/gen-bundle); no network.",
)
@click.option(
    "--out",
    metavar="DIR",
    default="out",
    show_default=True,
    help="Directory to write the bundle to.",
)
@click.option("--force", is_flag=True, help="Replace a bundle that an earlier run wrote to --out.")
@click.version_option(__version__, "--version", prog_name="gen-bundle", message="%(prog)s %(version)s")
def main(out: str, force: bool, **inputs: object) -> None:
    """Render a Windows deployment bundle that runs a Jupyter notebook server at http://NAME/.

    The bundle (a launcher, a Task Scheduler task, a hosts-file block,
    install.ps1, uninstall.ps1 and a README for the reviewer) is written to
    --out. Nothing is installed on this machine.
    """
    import time

    from .api import generate  # lazily: --help and --version need none of it

    started = time.monotonic()
    if inputs.get("env"):
        click.echo("Building the environment (the first build downloads about 55 MB of wheels)...", err=True)
    try:
        path = generate(out=out, force=force, **inputs)
    except InvalidValue as exc:
        # Every refusal of an input, whichever rule it breaks, reads the same way:
        # "Invalid value for '--flag': 'value': rule" (click's form), exit 2.
        raise click.BadParameter(str(exc), param_hint=f"'{OPTION_FLAGS.get(exc.param, exc.param)}'") from None
    except GenBundleError as exc:  # a write refused or failed, an environment that cannot be built
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    except OSError as exc:  # reading gen-bundle's own templates failed: a broken installation
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
    if inputs.get("env"):
        archive = path / "python-env.zip"
        click.echo(
            f"Environment: {archive.stat().st_size / 1e6:.1f} MB archive, built in {time.monotonic() - started:.1f} s.",
            err=True,
        )
    click.echo(f"Wrote the bundle to {path}; its README.md says how to review and install it.", err=True)
