"""One validation gate: an invalid BundleSpec cannot be made, however it is made."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError

import click
import pytest
from click.testing import CliRunner

from generator import __version__
from generator.api import generate
from generator.cli import main
from generator.errors import InvalidValue
from generator.spec import (
    DEFAULTS,
    INPUTS,
    REQUIRED,
    VERSION,
    BundleSpec,
    build_spec,
    is_dotted_quad,
    is_label,
)
from generator.templating import is_plain_name
from generator.winpath import REFUSED_CATEGORIES, WinPath, env_prefix, is_refused_char, parse_windows_path

from conftest import CANONICAL

CANONICAL_SPEC = build_spec(**CANONICAL)

# (field, invalid value, words of the rule)
INVALID = [
    ("ip", "10.0.0.1", "loopback"),
    ("name", "x&y", "DNS label"),
    ("name", "\u212ay", "U+212A is not ASCII"),
    ("port", 99999, "1 to 65535"),
    ("port", True, "1 to 65535"),
    ("port", "80 ", "1 to 65535"),
    ("notebook_dir", WinPath(None, "x&y"), "absolute"),
    ("notebook_dir", WinPath("USERPROFILE", "a\\..\\b"), "'..'"),
    ("python", WinPath(None, "C:\\Python\\python"), ".exe"),
    ("python", 'C:\\Py"thon\\python.exe', "does not allow"),
    ("python", WinPath("LOCALAPPDATA", "Programs\\Python\\Python313\\python.exe"), "installed for all users"),
    ("auth", "off", "token, none"),
    ("window", "max", "hidden, minimized"),
    ("scope", "site", "machine, user"),
    ("user", "CONTOSO\\alice", "--scope user only"),
    ("version", "1.0; rm", "version number"),
]


@pytest.mark.parametrize(("field", "value", "words"), INVALID)
def test_replace_cannot_make_an_invalid_spec(field, value, words):
    with pytest.raises(InvalidValue, match=re.escape(words)) as caught:
        CANONICAL_SPEC.replace(**{field: value})
    assert caught.value.param == field


@pytest.mark.parametrize(("field", "value", "words"), INVALID)
def test_the_constructor_cannot_make_an_invalid_spec(field, value, words):
    fields = {name: getattr(CANONICAL_SPEC, name) for name in (*INPUTS, "version")}
    with pytest.raises(InvalidValue, match=re.escape(words)):
        BundleSpec(**{**fields, field: value})


def test_a_valid_replace_is_normalised_like_build_spec():
    spec = CANONICAL_SPEC.replace(name="PY", port="8080", notebook_dir="D:\\Data\\")
    assert spec == build_spec(**{**CANONICAL, "name": "py", "port": 8080, "notebook_dir": "D:\\Data"})
    assert spec.notebook_dir == WinPath(None, "D:\\Data")
    user = CANONICAL_SPEC.replace(scope="user", user="CONTOSO\\alice")
    assert (user.scope, user.user) == ("user", "CONTOSO\\alice")


def test_the_kelvin_sign_is_refused_not_lowercased_into_k():
    assert "\u212a".lower() == "k"  # why the check comes before lowercasing
    with pytest.raises(InvalidValue, match="U\\+212A is not ASCII"):
        build_spec(ip="127.0.0.13", name="\u212ay")
    result = CliRunner().invoke(main, ["--ip", "127.0.0.13", "--name", "\u212ay", "--out", "unused"])
    assert result.exit_code == 2
    assert "Error: Invalid value for '--name': '\u212ay': U+212A is not ASCII" in result.stderr


def test_scope_is_decided_before_user_whatever_the_argument_order(tmp_path):
    cases = (
        ["--scope", "site"],  # judged before user, the missing --user is not the error
        ["--scope", "site", "--user", "CONTOSO\\alice"],
        ["--user", "CONTOSO\\alice", "--scope", "site"],
    )
    for args in cases:
        result = CliRunner().invoke(main, ["--ip", "127.0.0.13", "--name", "py", *args, "--out", str(tmp_path / "o")])
        assert result.exit_code == 2
        assert "Error: Invalid value for '--scope': 'site': must be one of machine, user" in result.stderr
    assert not (tmp_path / "o").exists()


# Every refusal of a value reads the same, whether the rule is a type, a choice or a check.
ONE_STYLE = [
    ("--port", "eighty", "must be a TCP port number from 1 to 65535"),
    ("--port", "99999", "must be a TCP port number from 1 to 65535"),
    ("--auth", "off", "must be one of token, none"),
    ("--window", "max", "must be one of hidden, minimized"),
    ("--scope", "site", "must be one of machine, user"),
    ("--ip", "10.0.0.1", "must be a loopback address inside 127.0.0.0/8"),
    ("--name", "x&y", "must be one DNS label"),
    ("--name", "con", "is a reserved device name on Windows"),
    ("--name", "LPT9", "is a reserved device name on Windows"),
    ("--notebook-dir", "Notebooks", "must be an absolute Windows path"),
    ("--python", "C:\\Python\\python", "must name the python.exe file"),
]


@pytest.mark.parametrize(("flag", "value", "rule"), ONE_STYLE)
def test_every_refusal_has_one_message_style(tmp_path, flag, value, rule):
    args = ["--ip", "127.0.0.13", "--name", "py", flag, value, "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: Invalid value for '{flag}': '{value}': {rule}"), last
    assert not (tmp_path / "o").exists()


def test_defaults_are_written_once():
    """Each default is its field's: the spec made from ip and name alone holds them, and the command
    line's options start from the same values (as text, as the options take text)."""
    import dataclasses

    fields = {field.name: field for field in dataclasses.fields(BundleSpec)}
    for name in INPUTS:
        declared = fields[name].metadata["option"]
        if declared.required:
            assert fields[name].default is dataclasses.MISSING, name
        else:
            assert fields[name].default == declared.default == DEFAULTS[name], name
    assert set(DEFAULTS) == set(INPUTS) - set(REQUIRED) and REQUIRED == ("ip", "name")
    spec = build_spec(ip="127.0.0.13", name="py", env=None, packages=None)  # None: the default
    assert spec == BundleSpec(ip="127.0.0.13", name="py")
    for key, value in DEFAULTS.items():
        assert getattr(spec, key) == (parse_windows_path(key, value) if key in ("notebook_dir", "python") else value), (
            key
        )
    ctx = main.make_context("gen-bundle", ["--ip", "127.0.0.13", "--name", "py"])
    for key, value in DEFAULTS.items():
        shown = value if isinstance(value, (bool, tuple)) or value is None else str(value)
        assert ctx.params[key] == shown, key


def test_every_option_of_a_render_follows_from_one_declaration():
    """The click options, generate()'s keywords and bundle.json's keys are the declared inputs
    and build options, in one order: none is added by hand in one place and not the others."""
    import inspect

    from generator.api import generate as library
    from generator.cli import OPTION_FLAGS
    from generator.options import BUILD_OPTIONS
    from generator.spec import DECLARED, ENV_INPUTS

    options = [param.name for param in main.params if isinstance(param, click.Option)]
    assert options == [*INPUTS, *BUILD_OPTIONS, "from_", "version"]  # and click's --help
    for param in main.params:
        if param.name in OPTION_FLAGS:
            assert param.opts == [OPTION_FLAGS[param.name]]
            declared = {**DECLARED, **BUILD_OPTIONS}[param.name]
            assert param.help is not None and param.help.startswith(declared.shown_help), param.name
    keywords = inspect.signature(library).parameters
    assert [name for name, p in keywords.items() if p.kind is p.KEYWORD_ONLY] == [*BUILD_OPTIONS, "cache", "progress"]
    assert [p.kind for p in keywords.values()][-1] is inspect.Parameter.VAR_KEYWORD  # the inputs
    plain = build_spec(ip="127.0.0.13", name="py")
    assert list(plain.inputs()) == [name for name in INPUTS if name not in ENV_INPUTS]
    assert list(plain.replace(env=True, python_version="3.13").inputs()) == list(INPUTS)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--python-version", "3.13"], "'--python-version': '3.13': goes with --env only"),
        (["--package", "pandas", "--package", "numpy"], "'--package': 'pandas': goes with --env only"),
        (["--requirements", "reqs.txt"], "'--requirements': 'reqs.txt': goes with --env only"),
        (["--lock", "pylock.toml"], "'--lock': 'pylock.toml': goes with --env only"),
        (["--offline"], "'--offline': '--offline': goes with --env only"),
        # An input before a build option in --help is named first, whatever its rule.
        (["--lock", "pylock.toml", "--port", "0"], "'--port': '0': must be a TCP port"),
    ],
)
def test_every_option_that_needs_env_is_refused_without_it_by_its_own_flag(flags, named, tmp_path):
    """One rule, Option.needs_env, for the inputs and the build's options: each is refused without
    --env naming the flag the user typed (not --package for a --requirements file), and nothing is
    written."""
    (tmp_path / "reqs.txt").write_text("pandas\n")
    result = CliRunner().invoke(
        main, ["--ip", "127.0.0.13", "--name", "py", *flags, "--out", str(tmp_path / "out")], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert f"Error: Invalid value for {named}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_required_input_left_out_is_named():
    with pytest.raises(InvalidValue) as caught:
        build_spec(ip="127.0.0.13")
    assert caught.value.param == "name"
    with pytest.raises(TypeError, match="nmae"):
        generate(ip="127.0.0.13", nmae="py", out="unused")


def test_the_library_fills_in_the_same_defaults(tmp_path):
    out = generate(ip="127.0.0.13", name="py", out=str(tmp_path / "lib"))
    assert out == tmp_path / "lib"  # the folder, as a Path
    cli = tmp_path / "cli"
    assert CliRunner().invoke(main, ["--ip", "127.0.0.13", "--name", "py", "--out", str(cli)]).exit_code == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {p.name: p.read_bytes() for p in cli.iterdir()}


def test_a_missing_user_is_said_so_not_shown_as_none():
    result = CliRunner().invoke(main, ["--ip", "127.0.0.13", "--name", "py", "--scope", "user", "--out", "unused"])
    assert result.exit_code == 2
    assert "Error: Invalid value for '--user': none given: --scope user needs --user DOMAIN\\name" in result.stderr


def test_build_spec_refuses_an_unknown_input():
    with pytest.raises(TypeError, match="nmae"):
        build_spec(ip="127.0.0.13", nmae="py")


def test_one_list_of_reserved_device_names_for_paths_and_the_environment():
    """Windows reserves COM0 and LPT0 too (and COM¹..³): the input paths and the environment's
    file names are checked against the same list (generator.winpath)."""
    from generator.environment.archive import _check_name
    from generator.errors import EnvBuildError
    from generator.winpath import is_reserved_name

    for name in ("con", "com0", "lpt9", "aux"):  # and as --name, which names folders and files
        with pytest.raises(InvalidValue, match="reserved device name"):
            build_spec(**{**CANONICAL, "name": name})
    build_spec(**{**CANONICAL, "name": "console"})
    for name in ("com0", "LPT0.txt", "nul .log", "com\u00b9", "aux"):
        assert is_reserved_name(name)
        with pytest.raises(InvalidValue, match="reserved device name"):
            build_spec(**{**CANONICAL, "notebook_dir": f"C:\\data\\{name}"})
        with pytest.raises(EnvBuildError, match="not a file name Windows can hold"):
            _check_name(f"Lib/site-packages/{name}", "w.whl")
    assert not is_reserved_name("console") and not is_reserved_name("com10")


def test_a_spec_is_immutable_and_compared_by_value():
    with pytest.raises(FrozenInstanceError):
        CANONICAL_SPEC.port = 8080  # type: ignore[misc]
    assert CANONICAL_SPEC.replace() == CANONICAL_SPEC and hash(CANONICAL_SPEC.replace()) == hash(CANONICAL_SPEC)
    assert CANONICAL_SPEC.replace(port=8080) != CANONICAL_SPEC
    with pytest.raises(TypeError, match="no field 'colour'"):
        CANONICAL_SPEC.replace(colour="blue")
    with pytest.raises(FrozenInstanceError):
        WinPath(None, "C:\\x").rest = "D:\\y"


# ---- the patterns at their edges ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text,ok",
    [("a", True), ("a1-b", True), ("a" * 63, True), ("a" * 64, False), ("a-", False), ("-a", False)]
    + [("a\n", False), ("", False), ("a.b", False), ("A", False), ("\u00e9", False)],
)
def test_is_label_at_its_edges(text, ok):
    assert is_label(text) is ok


@pytest.mark.parametrize(
    "text,ok",
    [("127.0.0.13", True), ("0.0.0.0", True), ("255.255.255.255", True), ("01.0.0.1", False)]
    + [("1000.0.0.1", False), ("1.2.3.4.5", False), ("1.2.3", False), ("1.2.3.4\n", False)]
    + [("\u0661.0.0.1", False), ("1..2.3", False), ("+1.0.0.1", False), ("1.0.0.1 ", False)],
)
def test_is_dotted_quad_at_its_edges(text, ok):
    assert is_dotted_quad(text) is ok


@pytest.mark.parametrize(
    "text,found",
    [("%USERPROFILE%", ("USERPROFILE", 13)), ("%USERPROFILE%\\x", ("USERPROFILE", 14))]
    + [("%USERPROFILE%\n", ("USERPROFILE", 13)), ("%USERPROFILE%_x", None), ("%%\\", None)]
    + [("%\u00e9%\\", None), ("%A1%\\", None), ("C:\\x", None), ("%USERPROFILE%\n\n", None)],
)
def test_env_prefix_at_its_edges(text, found):
    assert env_prefix(text) == found


def test_is_plain_name_controls():
    assert is_plain_name("powershell/engine-check.ps1", "ps")
    assert not is_plain_name("python/guard.py", "ps")  # another language's partial
    assert not is_plain_name("powershell/../x.ps1", "ps")
    assert not is_plain_name("powershell/start.ps1", "md")  # a language that pastes none


def test_is_refused_char_needs_no_character_table_for_ascii():
    import unicodedata

    for code in range(0x80):  # the table's answer for each ASCII character
        ch = chr(code)
        assert is_refused_char(ch) == (unicodedata.category(ch) in REFUSED_CATEGORIES), code
    # Beyond ASCII, characters whose answer is known: separators, a surrogate, an unassigned
    # code point, the BOM and a C1 control refused; a letter, a zero-width space (Cf) and a
    # no-break space (Zs) allowed.
    refused = {"\u2028": True, "\u2029": True, "\ud800": True, "\u0378": True, "\ufeff": True, "\u0085": True}
    allowed = {"\u00e9": False, "\u200b": False, "\u00a0": False}
    assert {ch: is_refused_char(ch) for ch in {**refused, **allowed}} == {**refused, **allowed}


def test_this_version_is_a_version_number():
    assert VERSION.fullmatch(__version__)


def test_the_librarys_build_options_are_the_declared_ones():
    """generate()'s defaults are the declarations', and each option that needs --env is refused
    without it by the library too, naming it; an empty out is refused there, not only by the CLI."""
    import inspect

    from generator.options import BUILD_OPTIONS

    keywords = inspect.signature(generate).parameters
    for name, option in BUILD_OPTIONS.items():
        assert keywords[name].default == option.default, name
        if option.needs_env:
            value = True if option.switch else "some-file"
            with pytest.raises(InvalidValue, match="goes with --env only") as caught:
                generate(ip="127.0.0.13", name="py", out="unused", **{name: value})
            assert caught.value.param == name
    with pytest.raises(InvalidValue, match="must name a folder") as caught:
        generate(ip="127.0.0.13", name="py", out="")
    assert caught.value.param == "out"


@pytest.mark.parametrize("empty", [[], ()])
def test_no_packages_is_leaving_them_out_without_env(empty):
    """An empty list of packages is no package given: not refused without --env (a library caller's
    ``packages=[]``), and the spec is the one made without it."""
    assert build_spec(ip="127.0.0.13", name="py", packages=empty) == build_spec(ip="127.0.0.13", name="py")
