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

from collections.abc import Callable
from typing import Any, TypeVar

import click

from . import __version__
from .errors import GenBundleError, InvalidValue
from .options import BUILD_OPTIONS, Option
from .spec import DECLARED, REQUIRED
from .winpath import ENV_BASES

FC = TypeVar("FC", bound=Callable[..., Any])

_BASES = [f"%{base}%" for base in ENV_BASES.values()]  # winpath's list
EPILOG = f"""\b
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
{", ".join(_BASES[:-1])} or {_BASES[-1]},
expanded on the target; every other % is literal.
"""

# Every option of a render: the bundle's inputs, then the build's options, each declared once
# (generator/spec.py, generator/options.py), in the order --help lists them.
DECLARED_OPTIONS: dict[str, Option] = {**DECLARED, **BUILD_OPTIONS}
OPTION_FLAGS = {name: declaration.flag for name, declaration in DECLARED_OPTIONS.items()}


# What may be given with --from, which takes every other input from bundle.json.
FROM_ALLOWS = ("offline",)


def _option(name: str, option: Option) -> Callable[[FC], FC]:
    """The click option of one declared option. Options take text and leave every check to the
    spec, so that a refusal reads the same whichever rule it breaks; the required inputs are
    checked for being given below, not by click, so that the group's commands go without them."""
    if option.switch:
        return click.option(option.flag, name, is_flag=True, help=option.shown_help)
    if option.repeat:
        return click.option(option.flag, name, multiple=True, metavar=option.shown_metavar, help=option.shown_help)
    return click.option(
        option.flag,
        name,
        type=str,
        metavar=option.shown_metavar,
        default=option.default,
        show_default=option.default is not None,
        help=option.shown_help,
    )


def _declared_options(function: FC) -> FC:
    for name, option in reversed(DECLARED_OPTIONS.items()):
        function = _option(name, option)(function)
    return function


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
@_declared_options
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

    The bundle is written to --out: install.ps1, uninstall.ps1 and detect.ps1
    and the engine module they share; two Task Scheduler tasks (the broker's
    at boot, each user's server at logon) with the .bat and Python scripts
    they run; the hosts-file lines; with --env, the environment's archive,
    pylock.toml and SBOM; SHA256SUMS, bundle.json, and a README for the
    reviewer. Nothing is installed on this machine. The commands below check,
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
        if set(given) - set(FROM_ALLOWS):
            flags = ", ".join(OPTION_FLAGS[name] for name in given if name not in FROM_ALLOWS)
            raise click.UsageError(f"--from takes the inputs from bundle.json: {flags} cannot be given with it")
        inputs = _inputs_from(from_, offline=bool(inputs.get("offline")))
    else:
        for required in REQUIRED:
            if inputs.get(required) is None:
                param = next(p for p in ctx.command.params if p.name == required)
                raise click.MissingParameter(ctx=ctx, param=param)
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

        inputs["lock"] = str(Path(manifest_path).parent / ENV_LOCK)
    return {**inputs, "offline": offline}  # generate() refuses --offline for a bundle without --env


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
        if from_ is not None and exc.param in DECLARED:  # a bundle input: bundle.json's, not typed
            hint = f"'{exc.param}' in {from_}"
        raise click.BadParameter(str(exc), param_hint=hint) from None
    except (GenBundleError, OSError) as exc:
        # A write refused or failed, an environment that cannot be built; an OSError here is
        # gen-bundle's own templates unreadable: a broken installation.
        from .exits import fail  # here: a run that succeeds needs none of it

        fail(exc)
    if inputs.get("env"):
        from .bundle_format import ENV_ARCHIVE
        from .figures import size_mb

        click.echo(
            f"Environment: {size_mb((path / ENV_ARCHIVE).stat().st_size)} archive, built in {time.monotonic() - started:.1f} s.",
            err=True,
        )
    click.echo(f"Wrote the bundle to {path}; its README.md says how to review and install it.", err=True)
