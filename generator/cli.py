"""The command line: a thin click layer over generator.api and the trust commands.

``gen-bundle --ip ... --name ...`` renders a bundle (the group's own options, as
before there were subcommands); ``gen-bundle check|diff|engine|sign`` are subcommands
(generator/commands.py, loaded by name). Errors become exit codes in the command line
only, here and in generator/exits.py, which the subcommands report through too: bad input
exits 2 (click's usage-error code), a refused or failed write exits 1; messages go to stderr.
The options take text and leave every check to the spec, so that a refusal
reads the same whichever rule it breaks.
"""

from __future__ import annotations

from typing import Any

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
  gen-bundle --ip 127.0.0.13 --name py --python "%ProgramFiles%\\Python312\\python.exe"
  gen-bundle --ip 127.0.0.13 --name py --env --package pandas --package matplotlib
  gen-bundle --ip 127.0.0.13 --name py --env --lock out/pylock.toml --out out-again
  gen-bundle --from out/bundle.json --out out-new      (the same inputs, this version)
  gen-bundle check out          gen-bundle diff out out-new
  gen-bundle sign out --cert signer.pem --key signer.key

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


# The subcommands, in generator/commands.py: loaded for a command's name or --help, so that a
# render builds none of their options (click's lazily loaded subcommands).
COMMANDS = ("check", "diff", "engine", "sign")


class BundleGroup(click.Group):
    """The group whose own options render a bundle: its usage line says both ways to call it."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[OPTIONS]  |  COMMAND [ARGS]...")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        from . import commands

        command: click.Command = getattr(commands, cmd_name)
        return command


@click.group(
    cls=BundleGroup,
    invoke_without_command=True,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100, "terminal_width": 100},
)
@click.option(
    "--ip",
    metavar="ADDRESS",
    help="Loopback address of the bundle, inside 127.0.0.0/8: the broker holds it from boot.  [required]",
)
@click.option("--name", metavar="NAME", help="Host name for the browser (http://NAME/): one DNS label.  [required]")
@click.option(
    "--port",
    type=str,
    metavar="PORT",
    default=DEFAULTS["port"],
    show_default=True,
    help="TCP port of the bundle's address.",
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
    help="python.exe on the target machines, installed for all users, with notebook installed: the broker and "
    "each user's server run it; with --env, the base Python that the bundle's environment uses.",
)
@click.option(
    "--auth",
    metavar="[" + "|".join(AUTH_MODES) + "]",
    default=DEFAULTS["auth"],
    show_default=True,
    help="token: each user's server takes only the broker's requests (which carry its secret, made anew at "
    "every start) and programs of that user that send the secret; http://NAME/ asks nobody for a sign-in. "
    "none: the server takes any request that reaches its port - any account of the PC can run code as that user.",
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
@click.option(
    "--from",
    "from_",
    metavar="BUNDLE.JSON",
    help="Render the inputs of an earlier bundle's bundle.json with this version (its pylock.toml, with --env).",
)
@click.version_option(__version__, prog_name="gen-bundle", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, /, out: str, force: bool, from_: str | None, **inputs: Any) -> None:
    """Render a Windows deployment bundle that runs a Jupyter notebook server at http://NAME/.

    The bundle (a launcher, a Task Scheduler task, a hosts-file block,
    install.ps1, uninstall.ps1 and a README for the reviewer) is written to
    --out. Nothing is installed on this machine. The commands below check,
    compare and sign bundles.
    """
    given = [name for name, value in inputs.items() if _given(ctx, name, value)]
    if ctx.invoked_subcommand is None and not given and from_ is None and not _given(ctx, "out", out) and not force:
        # Nothing asked for: what the tool does and how, not "Missing option '--ip'". Exit 2, as
        # click's own no_args_is_help: no bundle was made.
        click.echo(ctx.get_help(), err=True)
        ctx.exit(2)
    if ctx.invoked_subcommand is not None:
        if given or from_ or _given(ctx, "out", out) or force:
            raise click.UsageError(f"the options of a bundle go without a command ({ctx.invoked_subcommand})")
        return
    if from_ is not None:
        allowed = {"offline"}
        if set(given) - allowed:
            flags = ", ".join(OPTION_FLAGS[name] for name in given if name not in allowed)
            raise click.UsageError(f"--from takes the inputs from bundle.json: {flags} cannot be given with it")
        inputs = _inputs_from(from_, offline=bool(inputs.get("offline")))
    else:
        for required in ("ip", "name"):
            if inputs.get(required) is None:
                param = next(p for p in ctx.command.params if p.name == required)
                raise click.MissingParameter(ctx=ctx, param=param)
    if not out.strip():
        raise click.BadParameter(
            f"'{out}': must name a folder (an empty one would mean the current one)", param_hint="'--out'"
        )
    _generate(out, force, inputs, from_)


def _given(ctx: click.Context, name: str, value: object) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE" and value not in (None, False, ())


def _inputs_from(manifest_path: str, *, offline: bool) -> dict[str, Any]:
    """The inputs of an earlier bundle, as keyword arguments of generate; its lock with --env."""
    from pathlib import Path

    from .bundle import NotABundle, read_manifest

    try:
        manifest = read_manifest(Path(manifest_path))
    except NotABundle as exc:
        raise click.BadParameter(str(exc), param_hint="'--from'") from None
    inputs = dict(manifest["inputs"])
    if inputs.get("env"):
        from .bundle_format import ENV_LOCK

        lock = Path(manifest_path).parent / ENV_LOCK
        inputs.update(lock=str(lock), offline=offline)
    elif offline:
        raise click.UsageError("--offline goes with a bundle that has an environment")
    return inputs


def _generate(out: str, force: bool, inputs: dict[str, Any], from_: str | None = None) -> None:
    import sys
    import time

    from .api import generate  # lazily: --help and --version need none of it

    started = time.monotonic()
    report = None
    if inputs.get("env"):
        from .progress import BuildProgress

        click.echo(
            "Building the environment (the first build downloads every wheel of the lock; later ones use the cache)...",
            err=True,
        )
        report = BuildProgress(sys.stderr)
    try:
        path = generate(out=out, force=force, progress=report, **inputs)
    except InvalidValue as exc:
        # Every refusal of an input, whichever rule it breaks, reads the same way:
        # "Invalid value for '--flag': 'value': rule" (click's form), exit 2. With --from the
        # value is the earlier bundle's: its key in that bundle.json is named, not a flag not typed.
        hint = f"'{OPTION_FLAGS.get(exc.param, exc.param)}'"
        if from_ is not None:
            hint = f"'{exc.param}' in {from_}"
        raise click.BadParameter(str(exc), param_hint=hint) from None
    except (GenBundleError, OSError) as exc:
        # A write refused or failed, an environment that cannot be built; an OSError here is
        # gen-bundle's own templates unreadable: a broken installation.
        from .exits import fail  # here: a run that succeeds needs none of it

        fail(exc)
    if inputs.get("env"):
        from .bundle_format import ENV_ARCHIVE

        click.echo(
            f"Environment: {(path / ENV_ARCHIVE).stat().st_size / 1e6:.1f} MB archive, built in {time.monotonic() - started:.1f} s.",
            err=True,
        )
    click.echo(f"Wrote the bundle to {path}; its README.md says how to review and install it.", err=True)
