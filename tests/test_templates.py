"""The templates as a maintainer meets them: escaping by default, scripts made of
plain partials that each script uses, and the same logic text in every bundle."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generator import engine_source
from generator.layout import Layout
from generator.render import outputs, render
from generator.spec import build_spec
from generator.templating import FILTERS, UnescapedValue, jinja_environment, templates_dir
from generator.winpath import WinPath

from conftest import CANONICAL, REPO, need, render_bundle
from support.pwsh import walk

TEMPLATES = templates_dir()
PARTIAL_DIRS = ("powershell", "python", "engine")  # the engine's source is joined as it is, like a partial
SCRIPTS = ("install.ps1", "uninstall.ps1", "detect.ps1")
END_OF_VALUES = "# In 32-bit PowerShell on 64-bit Windows"  # the first line after the values block
START_OF_BODY = "# ==== Below this line the file is the same in every bundle"

# Inputs that change every value the scripts hold, and every branch the templates take.
VARIANTS = [
    {},
    {"scope": "user", "user": "CONTOSO\\alice", "window": "minimized"},
    {"auth": "none", "port": 8080, "name": "lab-1", "ip": "127.0.0.42"},
    {"python": "D:\\Python 3.13 & Co\\python.exe", "notebook_dir": "D:\\Data & Co\\100%"},
]


# ---- escaping by default ----------------------------------------------------------


@pytest.mark.parametrize("language", sorted(set(FILTERS) - {"xml"}))
def test_a_value_without_its_language_filter_is_refused(language):
    env = jinja_environment(language)
    with pytest.raises(UnescapedValue, match=language):
        env.from_string("{{ value }}").render(value="a")
    with pytest.raises(UnescapedValue):
        env.from_string("{{ (value ~ '') if value else value }}").render(value="a")
    for name in FILTERS[language]:
        assert env.from_string("{{ value|" + name + " }}").render(value="a")


@pytest.mark.parametrize("language", sorted(FILTERS))
def test_another_language_filter_does_not_exist_there(language):
    import jinja2

    env = jinja_environment(language)
    foreign = {name for filters in FILTERS.values() for name in filters} - set(FILTERS[language])
    assert foreign
    for name in foreign:
        with pytest.raises(jinja2.TemplateAssertionError):
            env.from_string("{{ value|" + name + " }}")


def test_xml_is_autoescaped_and_refuses_control_characters():
    env = jinja_environment("xml")
    assert env.from_string("{{ value }}").render(value="a<b&c") == "a&lt;b&amp;c"
    with pytest.raises(ValueError, match="control character"):
        env.from_string("{{ value }}").render(value="a\x01b")


def unfiltered_outputs(source: str, language: str) -> list[str]:
    """Each {{ }} of ``source`` that does not end in a filter of ``language``, and each
    way around finalize and autoescape ({% filter %} blocks, ``|safe``), read from
    Jinja's own parse tree: it covers the branches a render does not take."""
    from jinja2 import nodes

    env = jinja_environment(language)
    tree = env.parse(source)
    found = [f"line {node.lineno}: FilterBlock" for node in tree.find_all(nodes.FilterBlock)]
    found += [f"line {node.lineno}: |{node.name}" for node in tree.find_all(nodes.Filter) if node.name == "safe"]
    for output in tree.find_all(nodes.Output):
        for child in output.nodes:
            if isinstance(child, nodes.TemplateData) or language == "xml":
                continue
            if isinstance(child, nodes.Call) and isinstance(child.node, nodes.Name) and child.node.name == "plain":
                if len(child.args) == 1 and isinstance(child.args[0], nodes.Const):
                    continue  # a partial pasted as it is (render.plain): a name render checks
            if not (isinstance(child, nodes.Filter) and child.name in FILTERS[language]):
                found.append(f"line {child.lineno}: {type(child).__name__}")
    return found


def template_languages() -> dict[str, str]:
    """Every template and partial, with the language of the file it ends up in. The engine is
    none: gen-bundle joins its source, plain PowerShell (tests/test_engine_source.py)."""
    languages = {
        output.template: output.language for output in outputs(build_spec(**CANONICAL)).values() if not output.shared
    }
    include = re.compile(r"\{%\s*include\s+'([^']+)'\s*%\}|\{\{\s*plain\('([^']+)'\)\s*\}\}")
    for template, language in list(languages.items()):
        for name in (a or b for a, b in include.findall((TEMPLATES / template).read_text(encoding="utf-8"))):
            assert languages.setdefault(name, language) == language, f"{name} is included into two languages"
    return languages


def test_every_value_in_every_template_goes_through_its_language_filter():
    languages = template_languages()
    on_disk = {str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*") if p.is_file()}
    engine = {name for name in on_disk if name.startswith(f"{engine_source.FOLDER}/")}
    assert f"{engine_source.FOLDER}/{engine_source.LOADER}" in engine
    assert set(languages) == on_disk - engine, "a template is neither rendered nor included"
    for template, language in sorted(languages.items()):
        source = (TEMPLATES / template).read_text(encoding="utf-8")
        assert unfiltered_outputs(source, language) == [], template


def test_the_filter_check_can_fail():
    assert unfiltered_outputs("<# {{ spec.user }} #>", "ps") == ["line 1: Getattr"]
    assert unfiltered_outputs("{{ spec.user|bat }}", "ps") == ["line 1: Filter"]
    assert unfiltered_outputs("{{ (a if b else c)|ps }} {{ a if b else c|ps }}", "ps") == ["line 1: CondExpr"]
    assert unfiltered_outputs("{% filter replace('X', v) %}X{% endfilter %}", "ps") == ["line 1: FilterBlock"]
    assert unfiltered_outputs("<a>{{ v|safe }}</a>", "xml") == ["line 1: |safe"]
    assert unfiltered_outputs("{{ plain(name) }}", "ps") == ["line 1: Call"]


def test_plain_pastes_only_its_language_partials():
    ps = jinja_environment("ps")
    assert ps.from_string("{{ plain('powershell/start.ps1') }}").render().startswith("# The engine checked")
    for name in ("../README.md", "python/guard.py", "powershell/../../etc/passwd", "/etc/hostname"):
        with pytest.raises(UnescapedValue, match="pastes only powershell/"):
            ps.from_string("{{ plain(name) }}").render(name=name)
    with pytest.raises(UnescapedValue):
        jinja_environment("md").from_string("{{ plain('python/guard.py') }}").render()


def test_comment_text_cannot_close_its_comment():
    ps = jinja_environment("ps")
    with pytest.raises(ValueError, match="block comment"):
        ps.from_string("<# {{ value|ps_text }} #>").render(value="x #> Remove-Item C:\\")
    py = jinja_environment("py")
    with pytest.raises(ValueError, match="Python string"):
        py.from_string('r"""{{ value|py_text }}"""').render(value='x"""; import os')
    bat = jinja_environment("bat")
    assert bat.from_string("echo {{ value|bat_text }}").render(value="a & b %PATH% (c)") == "echo a ^& b %%PATH%% ^(c^)"


# ---- templates by concern -------------------------------------------------------


def test_partials_are_plain_powershell_and_python():
    partials = [p for d in PARTIAL_DIRS for p in (TEMPLATES / d).iterdir() if p.suffix in (".ps1", ".psm1", ".py")]
    assert len(partials) >= 10
    for path in partials:
        text = path.read_text(encoding="utf-8")
        for mark in ("{{", "{%", "{#"):
            assert mark not in text, f"{path.name} holds template syntax {mark}"


def after(marker: str, text: str) -> str:
    assert text.count(marker) == 1, marker
    return text[text.index(marker) :]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_steps_are_the_same_text_in_every_bundle(script):
    """Below the values block, a script is the same text in every bundle without --env (with it,
    install.ps1 has two more steps, the environment's)."""
    bodies = {after(END_OF_VALUES, render_bundle(**v)[script].decode("utf-8-sig")) for v in VARIANTS}
    assert len(bodies) == 1
    # The values block does differ: the check compares what it claims to.
    heads = {render_bundle(**v)[script].decode("utf-8-sig").split(END_OF_VALUES)[0] for v in VARIANTS}
    assert len(heads) >= 2


@pytest.mark.parametrize("kind", ["launcher", "config", "guard", "broker"])
def test_python_logic_is_the_same_text_in_every_bundle(kind):
    """Below its values, each Python file of the bundle is its partials as they are, and nothing else
    but comments: the launcher pastes the watch, then its loop; the server's settings paste the
    registration, the watch, then the settings."""

    def body(inputs):
        spec = build_spec(**{**CANONICAL, **inputs})
        name = {
            "launcher": Layout(spec).launcher_script_file,
            "config": Layout(spec).config_file,
            "guard": Layout(spec).guard_file,
            "broker": Layout(spec).broker_file,
        }
        return after(START_OF_BODY, render(spec)[name[kind]].decode("utf-8"))

    assert len({body(v) for v in VARIANTS}) == 1
    partials = {
        "launcher": ["watch.py", "launcher.py"],
        "config": ["registration.py", "watch.py", "server_config.py"],
        "guard": ["guard.py"],
        "broker": ["broker.py"],
    }
    rest = body({}).replace("\r\n", "\n")
    for name in partials[kind]:
        source = (TEMPLATES / "python" / name).read_text(encoding="utf-8")
        assert rest.count(source) == 1, name
        rest = rest.replace(source, "")
    assert [line for line in rest.splitlines() if line.strip() and not line.startswith("#")] == []


def functions_and_calls(source: bytes, grammar) -> tuple[list[str], set[str]]:
    tree = grammar.parse(source)
    defined, called = [], set()
    for node in walk(tree.root_node):
        if node.type == "function_statement":
            name = next(c for c in node.children if c.type == "function_name")
            defined.append(name.text.decode().lower())
        elif node.type == "command_name":
            called.add(node.text.decode().lower())
    return defined, called


def engine_problems(engine: bytes, scripts: list[bytes], grammar) -> list[str]:
    """The scripts define no function and call only the engine's; the engine defines each function
    once and none that neither a script nor the engine itself calls."""
    defined, called_inside = functions_and_calls(engine, grammar)
    problems = [
        f"{name} defined {defined.count(name)} times" for name in sorted(set(defined)) if defined.count(name) > 1
    ]
    called = set(called_inside)
    for script in scripts:
        own, calls = functions_and_calls(script, grammar)
        problems += [f"a script defines {name}" for name in own]
        called |= calls  # what else a script calls is bound against the cmdlets in test_windows_api.py
    problems += [f"{name} is never called" for name in sorted(set(defined) - called)]
    return problems


def engine_of(files: dict[str, bytes]) -> tuple[str, bytes]:
    (name,) = [name for name in files if name.endswith(".psm1")]
    return name, files[name]


def test_the_engine_holds_every_function_and_each_is_called(grammars, windows_env):
    """Every function is the engine's, and each runs for some bundle (the environment's in an
    --env bundle only)."""
    from support.pwsh import script_text

    with_env = render(build_spec(**CANONICAL, env=True), env=windows_env)
    for grammar in grammars.values():
        for inputs in VARIANTS:
            files = render_bundle(**inputs)
            scripts = [script_text(files[name]) for name in SCRIPTS] + [script_text(with_env["install.ps1"])]
            assert engine_problems(script_text(engine_of(files)[1]), scripts, grammar) == []


ENGINE_INPUTS = VARIANTS + [
    {"name": "x", "ip": "127.1.2.3", "port": 1, "window": "minimized"},
    {"scope": "user", "user": "AzureAD\\Zoë O'Brien", "notebook_dir": "C:\\50% off & more (v2) ^!'"},
    {"python": "C:\\Program Files\\Python313\\python.exe", "auth": "none", "name": "a-b-c"},
]


def test_the_engine_is_the_same_file_for_every_input_set(windows_env):
    """One SHA-256 for the engine across scopes, windows, names, ports, accounts, hostile folders
    and --env: what differs between two bundles of this version is in their scripts' values."""
    engines = {engine_of(render_bundle(**inputs)) for inputs in ENGINE_INPUTS}
    engines.add(engine_of(render(build_spec(**CANONICAL, env=True), env=windows_env)))
    assert len(engines) == 1
    name, data = engines.pop()
    assert name == f"gen-bundle-{build_spec(**CANONICAL).version}.psm1"
    assert b"127.0.0.13" not in data and b"'py'" not in data  # nothing of the canonical inputs


# What a reviewer of a second bundle reads: the scripts of the default bundle, at most.
SCRIPT_LINES = {
    "install.ps1": 180,
    "uninstall.ps1": 140,
    "detect.ps1": 85,
}  # 0.3.11: the relaunch forwards whole values


def test_each_script_is_short_enough_to_read(canonical_files):
    lines = {name: canonical_files[name].count(b"\n") for name in SCRIPT_LINES}
    assert all(lines[name] <= limit for name, limit in SCRIPT_LINES.items()), lines
    print(lines)


def test_the_functions_check_can_fail(grammars):
    engine = b"function Get-A { 1 }\nfunction Get-B { 2 }\nfunction Get-A { 3 }\nGet-A\n"
    for grammar in grammars.values():
        assert engine_problems(engine, [b"function Get-C { 1 }\nGet-C\n"], grammar) == [
            "get-a defined 2 times",
            "a script defines get-c",
            "get-b is never called",
        ]


def test_detect_is_small_and_knows_every_installed_file(canonical_files, grammars):
    from support.pwsh import assignments, script_text

    spec = build_spec(**CANONICAL)
    source = script_text(canonical_files["detect.ps1"])
    text = source.decode("utf-8")
    block = text[text.index("ExpectedSha        = @{") :]
    block = block[: block.index("}")]
    pairs = dict(re.findall(r"'([^']+)' = '([0-9a-f]{64})'", block))
    assert pairs == {name: hashlib.sha256(canonical_files[name]).hexdigest() for name in Layout(spec).installed_files}
    for grammar in grammars.values():
        defined, _ = functions_and_calls(source, grammar)
        assert defined == []
        assert "Bundle" in assignments(grammar.parse(source))


# ---- the server's settings and the guard: plain Python, read by a linter ----------------


def ruff_findings(path: Path) -> str:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    need(Path(ruff).exists(), "ruff (pip install ruff)")
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--isolated", "--select", "F,E9,B", "--output-format", "concise", str(path)],
        capture_output=True,
        text=True,
    )
    return result.stdout if result.returncode else ""


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_rendered_python_passes_the_linter(tmp_path, variant):
    spec = build_spec(**{**CANONICAL, **VARIANTS[variant]})
    files = render(spec)
    for name in (Layout(spec).config_file, Layout(spec).guard_file):
        path = tmp_path / name
        path.write_bytes(files[name])
        assert ruff_findings(path) == "", name


def test_the_linter_check_can_fail(tmp_path):
    spec = build_spec(**CANONICAL)
    path = tmp_path / "broken.py"
    path.write_bytes(render(spec)[Layout(spec).config_file].replace(b"\r\nAUTH = ", b"\r\nAUTHS = "))
    assert "F821" in ruff_findings(path)


# ---- the render is pure -----------------------------------------------------------------


def test_render_writes_nothing(tmp_path, monkeypatch):
    for variable in ("HOME", "XDG_CACHE_HOME", "TMPDIR"):
        (tmp_path / variable).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / variable))
    before = {p.name: p.stat().st_mtime_ns for p in TEMPLATES.rglob("*")}
    render(build_spec(**CANONICAL))
    assert [str(p) for p in tmp_path.rglob("*") if p.is_file()] == []
    assert {p.name: p.stat().st_mtime_ns for p in TEMPLATES.rglob("*")} == before


def test_compiled_templates_render_the_same_bytes(tmp_path, monkeypatch):
    """What the wheel ships compiled (generator/precompile.py) renders what the templates render."""
    import generator.compiled as compiled_module
    import generator.precompile as precompile
    from generator.render import render
    from generator.spec import build_spec

    specs = [
        build_spec(**CANONICAL),
        build_spec(**CANONICAL, scope="user", user="CONTOSO\\alice", window="minimized", auth="none", port=8080),
    ]
    from_source = [render(spec) for spec in specs]
    import importlib.util
    import sys

    from generator.render import ENGINE_OUTPUT
    from generator.templating import jinja_environment

    compiled = tmp_path / "generator" / "compiled_templates.py"
    compiled.parent.mkdir()
    precompile.compile_all(compiled)
    (tmp_path / "generator" / "templates").mkdir()  # the wheel's layout: compiled beside templates
    spec = importlib.util.spec_from_file_location("generator.compiled_templates", compiled)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "generator.compiled_templates", module)
    monkeypatch.setattr(compiled_module, "HERE", tmp_path / "generator")
    compiled_module._module.cache_clear()
    try:
        assert set(module.TEMPLATES) == {"bat", "hosts", "md", "ps", "py", "xml"}
        assert isinstance(jinja_environment("md").loader, compiled_module.CompiledLoader)
        # The engine and the partials come from the module: a run reads no template file.
        assert compiled_module.compiled_shared(ENGINE_OUTPUT.template, specs[0].version) is not None
        assert compiled_module.compiled_partial("powershell/engine-check.ps1") is not None
        # ... and it carries only what a run renders: the engine built, not its source.
        assert ENGINE_OUTPUT.template not in module.TEMPLATES["ps"]
        assert not [name for name in module.PARTIALS if name.startswith(f"{engine_source.FOLDER}/")]
        pasted = {
            name
            for path in TEMPLATES.rglob("*.j2")
            for name in re.findall(r"plain\('([^']+)'\)", path.read_text(encoding="utf-8"))
        }
        assert "powershell/engine-check.ps1" in pasted and set(module.PARTIALS) == pasted
        # Another version's engine, which the module does not carry, is rendered from templates/.
        from generator.render import render_shared

        assert render_shared(ENGINE_OUTPUT, "9.9.9").startswith(b"\xef\xbb\xbf")
        assert b"9.9.9" in render_shared(ENGINE_OUTPUT, "9.9.9")
        assert [render(spec) for spec in specs] == from_source
        # The control: a module whose engine differs renders that engine (it is what runs).
        ((key, data),) = module.SHARED.items()
        monkeypatch.setitem(module.SHARED, key, data + b"# planted\r\n")
        assert render(specs[0])[f"gen-bundle-{specs[0].version}.psm1"].endswith(b"# planted\r\n")
    finally:
        compiled_module._module.cache_clear()
    # No build machine's path in it: the templates are named, not located.
    assert str(REPO) not in compiled.read_text(encoding="utf-8")


# ---- every change: the engine's kinds of change against the README's table --------------


KIND_NAME = re.compile(r"[a-z]+(?:-[a-z]+)*")


def change_kinds(engine: bytes, grammar) -> set[str]:
    """Each kind the engine hands to Confirm-Change: a literal -Kind, or, where -Kind is a
    variable, every '<kind>-remove' literal of the function that calls it (Remove-BundleState
    walks a list of them). A -Kind that is neither is an error: the README could not list it."""
    kinds: set[str] = set()
    for node in walk(grammar.parse(engine).root_node):
        if node.type != "command" or node.children[0].text.decode().lower() != "confirm-change":
            continue
        elements = [c for c in node.children[1].children if c.type != "command_argument_sep"]
        at = next(i for i, c in enumerate(elements) if c.text.decode().lower() == "-kind")
        value = elements[at + 1].text.decode()
        if re.fullmatch(r"'[a-z-]+'", value):
            kinds.add(value.strip("'"))
            continue
        function = node
        while function is not None and function.type != "function_statement":
            function = function.parent
        assert function is not None, f"Confirm-Change -Kind {value} outside a function"
        listed = set(re.findall(r"'([a-z]+(?:-[a-z]+)*-remove)'", function.text.decode()))
        assert listed, f"Confirm-Change -Kind {value}: no '<kind>-remove' literal in its function"
        kinds |= listed
    return kinds


def readme_kinds(readme: str) -> set[str]:
    section = readme[readme.index("\n## Every change\n") :]
    section = section[: section.index("\n## ", 1)]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, re.M))


def test_the_readme_lists_every_kind_of_change_the_engine_makes(canonical_files, grammars):
    from support.pwsh import script_text

    name, engine = engine_of(canonical_files)
    listed = readme_kinds(canonical_files["README.md"].decode("utf-8"))
    for grammar in grammars.values():
        kinds = change_kinds(script_text(engine), grammar)
        assert {"receipt-remove", "engine-copy-remove", "root-remove", "environment"} <= kinds
        assert kinds == listed, (sorted(kinds - listed), sorted(listed - kinds))
    # Each "taken back by" that names a kind names one of the table.
    section = canonical_files["README.md"].decode("utf-8").split("\n## Every change\n")[1].split("\n## ")[0]
    for row in re.findall(r"^\| `[a-z-]+` \|.*$", section, re.M):
        for named in re.findall(r"`([a-z]+(?:-[a-z]+)+)`", row.rsplit("|", 2)[1]):
            assert named in listed, row


def test_the_kinds_check_can_fail(canonical_files, grammars):
    from support.pwsh import script_text

    engine = script_text(engine_of(canonical_files)[1])
    readme = canonical_files["README.md"].decode("utf-8")
    for grammar in grammars.values():
        planted = change_kinds(engine.replace(b"-Kind 'task-start'", b"-Kind 'task-kick'"), grammar)
        assert "task-kick" in planted and "task-start" not in planted
        with pytest.raises(AssertionError, match="no '<kind>-remove' literal"):
            change_kinds(b"function F { Confirm-Change -Kind $k -Target 1 }\n", grammar)
    assert "shortcut" not in readme_kinds(readme.replace("| `shortcut` |", "| shortcut |"))


# ---- the README and the broker: its files, its events and its limits as the code has them ----


def broker_constants() -> dict[str, int]:
    """The integer constants at the top level of templates/python/broker.py (numbers, arithmetic on
    them, tuples of them), as Python computes them."""
    import ast

    found: dict[str, int] = {}
    arithmetic = (ast.Constant, ast.BinOp, ast.Tuple, ast.Load, ast.operator)
    for node in ast.parse((TEMPLATES / "python" / "broker.py").read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        if not all(isinstance(part, arithmetic) for part in ast.walk(node.value)):
            continue
        value = eval(compile(ast.Expression(node.value), "broker.py", "eval"), {"__builtins__": {}})  # noqa: S307
        target = node.targets[0]
        pairs = (
            zip([e.id for e in target.elts if isinstance(e, ast.Name)], value, strict=True)
            if isinstance(target, ast.Tuple)
            else [(target.id, value)]
            if isinstance(target, ast.Name)
            else []
        )
        found.update({name: one for name, one in pairs if isinstance(one, int) and not isinstance(one, bool)})
    return found


def readme_broker_problems(readme: str, files: dict[str, bytes], constants: dict[str, int]) -> list[str]:
    from generator.figures import line_count

    problems = []
    layout = Layout(build_spec(**CANONICAL))
    flat = " ".join(readme.split())
    # The review's table: each file the reviewer reads, with its length as rendered; the broker's two
    # files with their SHA-256.
    for name in dict.fromkeys((layout.broker_file, layout.broker_task_file, layout.task_file, *layout.installed_files)):
        if f"| `{name}` | {line_count(files[name])} |" not in readme:
            problems.append(f"the review table does not give {name} with its {line_count(files[name])} lines")
    for name in (layout.broker_file, layout.broker_task_file):
        if f"{hashlib.sha256(files[name]).hexdigest()}  {name}" not in readme:
            problems.append(f"the README does not give the SHA-256 of {name}")
    # The broker's log: every event the broker writes, and no other.
    log = readme[readme.index("\n### The broker's log\n") :]
    log = log[: log.index("\n## ")]
    listed = {int(number) for number in re.findall(r"^\| (\d{3}) \|", log, re.M)}
    events = {value for name, value in constants.items() if name.startswith("EVENT_")}
    if listed != events:
        problems.append(f"the README's events {sorted(listed)} are not the broker's {sorted(events)}")
    # The limits it names, as the broker's constants are.
    for said in (
        f"{constants['MAX_CONNECTIONS_PER_ACCOUNT']} connections",
        f"({constants['MAX_CONNECTIONS']} for all together",
        f"from session 0, {constants['MAX_UNROUTED_CONNECTIONS']} together)",
        f"{constants['MAX_HEADER_BYTES'] // 1024} KiB of headers",
        f"{constants['MAX_BODY_BYTES'] // 2**20} MiB a body",
        f"{constants['MAX_MESSAGE_BYTES'] // 2**20} MiB a WebSocket message",
        f"{constants['IDLE_SECONDS'] // 60} minutes idle",
        f"{constants['BODY_SECONDS'] // 60} minutes for a body",
        f"kept under {constants['LOG_BYTES'] // 2**20} MiB",
        f"at most {constants['QUIET_EVENTS_PER_MINUTE']} a minute",
    ):
        if said not in flat:
            problems.append(f"the README does not say '{said}'")
    # Programs of the same account: where the port and secret are, and how they are sent.
    if str(layout.user_files.registration) not in readme or "Authorization: token <secret>" not in readme:
        problems.append("the README does not say how programs of the same account reach their server")
    return problems


def test_the_readme_gives_the_brokers_files_events_and_limits_as_the_code_has_them(canonical_files):
    readme = canonical_files["README.md"].decode("utf-8")
    assert readme_broker_problems(readme, canonical_files, broker_constants()) == []


def test_the_readme_broker_check_can_fail(canonical_files):
    readme = canonical_files["README.md"].decode("utf-8")
    constants = broker_constants()
    assert {constants["EVENT_STARTED"], constants["EVENT_CONNECTION_REFUSED"]} == {100, 300}
    layout = Layout(build_spec(**CANONICAL))
    changed = dict(canonical_files, **{layout.broker_file: canonical_files[layout.broker_file] + b"# one more\r\n"})
    problems = readme_broker_problems(readme, changed, dict(constants, EVENT_NEW=400, MAX_CONNECTIONS=512))
    assert f"the review table does not give {layout.broker_file} with its " in problems[0]
    assert problems[1:] == [
        f"the README does not give the SHA-256 of {layout.broker_file}",
        "the README's events [100, 101, 102, 103, 200, 201, 202, 300] are not the broker's "
        "[100, 101, 102, 103, 200, 201, 202, 300, 400]",
        "the README does not say '(512 for all together'",
    ]


def functions_reached(engine: bytes, scripts: list[bytes], grammar, *, env: bool) -> set[str]:
    """The engine's functions that the scripts' calls reach, call by call. Without --env a branch
    taken only when $EnvFolder is set (``if ($EnvFolder ...)``) is not followed: the values
    block sets it to ''."""

    def calls(node) -> set[str]:
        found = set()
        for inner in walk(node):
            if inner.type != "command_name":
                continue
            skipped = False
            ancestor = inner.parent
            while ancestor is not None and ancestor is not node:
                if ancestor.type == "statement_block" and not env:
                    condition = ancestor.prev_named_sibling
                    if (
                        condition is not None
                        and re.match(r"\$EnvFolder\b(?!\s*-eq)", condition.text.decode())
                        and ancestor.parent.type in ("if_statement", "elseif_clause")
                    ):
                        skipped = True
                        break
                ancestor = ancestor.parent
            if not skipped:
                found.add(inner.text.decode().lower())
        return found

    bodies = {}
    for node in walk(grammar.parse(engine).root_node):
        if node.type == "function_statement":
            name = next(c for c in node.children if c.type == "function_name").text.decode().lower()
            bodies[name] = node
    todo = set().union(*(calls(grammar.parse(script).root_node) for script in scripts)) & set(bodies)
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        reached.add(name)
        todo |= (calls(bodies[name]) & set(bodies)) - reached
    return reached


def environment_part(engine: bytes) -> set[str]:
    tail = engine.decode("utf-8")[engine.decode("utf-8").index("\n# ==== environment: ") :]
    return {name.lower() for name in re.findall(r"^function (\S+) \{", tail, re.M)}


def test_a_bundle_without_env_runs_nothing_of_the_engines_environment_part(canonical_files, grammars, windows_env):
    """What the README's part table says: the 'environment' part runs only with --env."""
    from support.pwsh import script_text

    engine = script_text(engine_of(canonical_files)[1])
    part = environment_part(engine)
    assert {"install-bundleenvironment", "get-basepythonproblem", "install-environment"} <= part
    with_env = render(build_spec(**CANONICAL, env=True), env=windows_env)
    for grammar in grammars.values():
        for inputs in VARIANTS:
            files = render_bundle(**inputs)
            reached = functions_reached(engine, [script_text(files[name]) for name in SCRIPTS], grammar, env=False)
            assert {"install-bundlefiles", "test-installpreflight", "remove-bundlefiles"} <= reached
            assert reached & part == set(), sorted(reached & part)
        # The control: with --env, the part runs, and the branches on $EnvFolder reach it.
        reached = functions_reached(engine, [script_text(with_env[name]) for name in SCRIPTS], grammar, env=True)
        assert part <= reached, sorted(part - reached)
        scripts = [script_text(canonical_files[name]) for name in SCRIPTS]
        unpruned = functions_reached(engine, scripts, grammar, env=True)
        assert "get-basepythonproblem" in unpruned


def bundle_value_problems(engine: bytes, scripts: dict[str, bytes], grammar) -> list[str]:
    """Each script sets its own $Bundle values (values.ps1.j2 gives each script what it needs), and
    Initialize-GenBundle makes each one a variable of the engine. A function that a script's calls
    reach and that reads a value only another script sets stops that script under Set-StrictMode: each
    such read, by script, function and value."""

    def keys(script: bytes) -> set[str]:
        text = script.decode("utf-8")
        block = text[text.index("$Bundle = @{") : text.index("\n}", text.index("$Bundle = @{"))]
        return set(re.findall(r"^    (\w+) +=", block, re.M))

    every = set().union(*(keys(script) for script in scripts.values()))
    bodies = {}
    for node in walk(grammar.parse(engine).root_node):
        if node.type == "function_statement":
            name = next(c for c in node.children if c.type == "function_name").text.decode().lower()
            bodies[name] = node.text.decode()
    problems = []
    for name, script in sorted(scripts.items()):
        mine = keys(script)
        for function in sorted(functions_reached(engine, [script], grammar, env=False)):
            read = set(re.findall(r"\$(\w+)", bodies[function])) & every
            problems += [f"{name}: {function} reads ${value}" for value in sorted(read - mine)]
    return problems


def test_every_bundle_value_a_script_reaches_is_one_it_sets(canonical_files, grammars):
    from support.pwsh import script_text

    engine = script_text(engine_of(canonical_files)[1])
    scripts = {name: script_text(canonical_files[name]) for name in SCRIPTS}
    for grammar in grammars.values():
        assert bundle_value_problems(engine, scripts, grammar) == []
    # The control: detect.ps1 without the broker's log, which it reads to tell the broker's process.
    line = next(line for line in scripts["detect.ps1"].split(b"\r\n") if line.startswith(b"    BrokerLog "))
    planted = dict(scripts, **{"detect.ps1": scripts["detect.ps1"].replace(line + b"\r\n", b"")})
    for grammar in grammars.values():
        assert bundle_value_problems(engine, planted, grammar) == ["detect.ps1: get-brokerlogline reads $BrokerLog"]


# ---- the engine's parts, read from its bytes ----------------------------------------------


def parts_by_lines(data: bytes) -> list[tuple[str, str, int, int]]:
    """engine_parts' answer, found the plain way: decoded and split into lines."""
    lines = data.decode("utf-8-sig").split("\r\n")
    heads = [
        (number, *line[len("# ---- ") :].removesuffix(" ----").partition(": ")[::2])
        for number, line in enumerate(lines, 1)
        if line.startswith("# ---- ")
    ]
    ends = [head[0] - 1 for head in heads[1:]] + [len(lines) - 1]
    first = ("constants", "the same in every bundle of this version, and the exit codes", 1, heads[0][0] - 1)
    return [first] + [(name, what, start, end) for (start, name, what), end in zip(heads, ends, strict=True)]


@pytest.mark.parametrize(
    "data",
    [
        b"# ---- a: b ----\r\nx\r\n# ---- c: d ----\r\ny\r\n",  # a heading on the first line
        b"\xef\xbb\xbf# ---- a: b ----\r\nx\r\n",  # ... after the BOM
        b"k\r\n# ---- a: b ----",  # the last heading without a line end
        b"k\r\nj\r\n# ---- a ----\r\n\r\n# ---- b: c ----\r\n",  # a heading without ': what'
    ],
)
def test_engine_parts_reads_the_headings_as_the_lines_show_them(data):
    from generator.figures import engine_parts

    assert engine_parts(data) == parts_by_lines(data)


def test_engine_parts_of_the_engine(canonical_files):
    from generator.figures import engine_parts

    name, data = engine_of(canonical_files)
    assert engine_parts(data) == parts_by_lines(data)
    assert len(engine_parts(data)) > 10


def test_the_readme_says_what_a_run_that_extracts_nothing_reads():
    """The bundle README's figure for a boot run that finds the bundle in place: every file
    rendered before the README, less the environment's archive, and install.ps1 and the engine
    once more (each is read to run it and again against SHA256SUMS), in KB rounded up."""
    for inputs in ({}, {"scope": "user", "user": "CONTOSO\\alice"}):
        files = render_bundle(**inputs)
        found = re.search(r"against `SHA256SUMS`\): (\d+) KB", files["README.md"].decode())
        assert found is not None
        read = sum(len(data) for name, data in files.items() if name not in ("README.md", "bundle.json", "SHA256SUMS"))
        read += len(files["install.ps1"]) + len(next(data for name, data in files.items() if name.endswith(".psm1")))
        assert int(found.group(1)) == (read + 1023) // 1024
        assert int(found.group(1)) > 100  # the engine alone is more


@pytest.mark.parametrize(
    "value,written",
    [
        ("50% off", "50%% off"),
        ("%PATH%", "%%PATH%%"),
        (WinPath("USERPROFILE", "a%b%\\c"), "%USERPROFILE%\\a%%b%%\\c"),
        ("C:\\100%\\", "C:\\100%%\\\\"),
    ],
)
def test_bat_doubles_every_percent_sign_of_a_value(value, written):
    """cmd.exe expands %NAME% inside quotes: every % of a value is doubled, and only the one
    expansion a path means (its %base%) is left; the wine tests run it, minutes later."""
    from generator.escape import bat

    assert bat(value) == written
    assert bat(value) != written.replace("%%", "%")  # a change that stopped doubling would show


# ---- exit codes written as numbers: the two snippets pasted before the engine is loaded ------
# (they run before the engine's $Exit... values exist, so they carry the number itself)
PASTED_EXITS = {("start.ps1", 2): "EXIT_TAMPERED", ("relaunch.ps1", 1603): "EXIT_FAILURE"}


def pasted_exit_problems(folder) -> list[str]:
    from generator import constants

    problems = []
    found = set()
    for path in sorted(folder.glob("*.ps1")):
        for number in re.findall(r"(?m)^\s*exit (\d+)\s*$", path.read_text(encoding="utf-8")):
            found.add((path.name, int(number)))
            name = PASTED_EXITS.get((path.name, int(number)))
            if name is None:
                problems.append(f"{path.name}: exit {number} is no exit code of constants.py")
            elif getattr(constants, name) != int(number):
                problems.append(f"{path.name}: exit {number} is not {name} ({getattr(constants, name)})")
    problems += [f"{name}: no exit {number}" for name, number in sorted(set(PASTED_EXITS) - found)]
    return problems


def test_the_snippets_exit_codes_are_the_constants():
    """start.ps1's and relaunch.ps1's exit codes, written as numbers (the engine, which holds the
    constants, is not loaded yet), are the codes constants.py gives and the README lists."""
    assert pasted_exit_problems(TEMPLATES / "powershell") == []


def test_a_snippets_exit_code_that_drifts_is_found(tmp_path):
    for name in ("start.ps1", "relaunch.ps1"):
        (tmp_path / name).write_text((TEMPLATES / "powershell" / name).read_text(encoding="utf-8"), encoding="utf-8")
    text = (tmp_path / "start.ps1").read_text(encoding="utf-8").replace("    exit 2\n", "    exit 3\n")
    (tmp_path / "start.ps1").write_text(text, encoding="utf-8")
    assert pasted_exit_problems(tmp_path) == [
        "start.ps1: exit 3 is no exit code of constants.py",
        "start.ps1: no exit 2",
    ]


# ---- the broker's names, as the engine and the README repeat them ----------------------------
def broker_name_problems(broker: str, probe: str, readme: str) -> list[str]:
    """The broker's event source, its rotated log's suffix and where it says the launcher's log is,
    each read from the broker's own code, and found where probe.ps1 and the README repeat them."""
    from generator.constants import USER_FILES

    problems = []
    source = re.findall(r'RegisterEventSourceW\(None, "([^"]+)"\)', broker)
    suffix = re.findall(r'os\.replace\(self\.path, self\.path \+ "([^"]+)"\)', broker)
    if len(source) != 1 or len(suffix) != 1:
        return ["the broker's event source or log rotation is not where this test reads it"]
    if f"(source {source[0]})" not in probe:
        problems.append(f"probe.ps1 does not name the event source {source[0]}")
    if readme.count(f"ProviderName = '{source[0]}'") < 2 or f"source `{source[0]}`" not in readme:
        problems.append(f"the README does not name the event source {source[0]}")
    if f'"$BrokerLog{suffix[0]}"' not in probe:
        problems.append(f"probe.ps1 does not read the rotated log {suffix[0]}")
    if f"`broker.log{suffix[0]}`" not in readme:
        problems.append(f"the README does not name the rotated log broker.log{suffix[0]}")
    layout = Layout(build_spec(**CANONICAL))
    # The broker's message joins the name to the folder above it, written as a Python string literal.
    above = layout.user_state_dir.rest.removesuffix(layout.spec.name)
    said = f"the file {USER_FILES['launcher_log']} in %{layout.user_state_dir.base}%\\{above}".replace("\\", "\\\\")
    if said not in broker:
        problems.append(f"the broker does not say '{said}'")
    return problems


def test_the_brokers_names_are_the_ones_the_engine_and_readme_give(canonical_files):
    broker = (TEMPLATES / "python" / "broker.py").read_text(encoding="utf-8")
    probe = (TEMPLATES / "engine" / "probe.ps1").read_text(encoding="utf-8")
    readme = canonical_files["README.md"].decode("utf-8")
    assert broker_name_problems(broker, probe, readme) == []
    renamed = broker.replace(
        'RegisterEventSourceW(None, "gen-bundle-broker")', 'RegisterEventSourceW(None, "gb-broker")'
    )
    assert broker_name_problems(renamed, probe, readme) == [
        "probe.ps1 does not name the event source gb-broker",
        "the README does not name the event source gb-broker",
    ]
    assert broker_name_problems(broker.replace('self.path + ".1")', 'self.path + ".old")'), probe, readme) == [
        "probe.ps1 does not read the rotated log .old",
        "the README does not name the rotated log broker.log.old",
    ]
    moved = broker.replace("launcher.log in %LOCALAPPDATA%", "launcher.log in %APPDATA%")
    assert broker_name_problems(moved, probe, readme) == [
        "the broker does not say 'the file launcher.log in %LOCALAPPDATA%\\\\gen-bundle\\\\'"
    ]


# ---- facts the engine matches by pattern or by branch, held to the Python that makes them ----
def test_every_environment_folder_form_is_one_the_engine_finds():
    """The engine finds an environment's folders (to remove the old ones) by a pattern of its own:
    each name install.ps1 gives one, with the id the build makes, must match it, and no longer id."""
    from generator.environment.build import ENV_FOLDER_FORMS, ENV_ID_HEX

    source = (TEMPLATES / "engine" / "environment-remove.ps1").read_text(encoding="utf-8")
    (pattern,) = re.findall(r"-cmatch '([^']+)'", source)
    for form in ENV_FOLDER_FORMS:
        assert re.fullmatch(pattern, form.format(id="0123456789abcdef"[:ENV_ID_HEX])), form
        assert not re.fullmatch(pattern, form.format(id="a" * (ENV_ID_HEX + 1))), form


def test_each_exit_codes_event_id_is_the_one_the_engine_writes():
    """base.ps1 turns an exit code into an event ID by two named offsets (busy, failure) and the
    code itself below 100: constants.EVENT_OFFSETS can hold only those two, or the README (which
    reads the table) and the engine part ways."""
    from generator import constants

    assert constants.EVENT_OFFSETS == {constants.EXIT_BUSY: 18, constants.EXIT_FAILURE: 99}
    source = (TEMPLATES / "engine" / "base.ps1").read_text(encoding="utf-8")
    assert "if ($code -eq $ExitBusy) {\n        $id += $EventBusy" in source
    assert "$code -ge 100) {\n        $id += $EventFailure" in source
    named = (constants.EXIT_BUSY, constants.EXIT_FAILURE)
    others = [code for name, code in vars(constants).items() if name.startswith("EXIT_") and code not in named]
    assert others and all(0 <= code < 100 for code in others)


def test_the_engine_knows_the_tasks_launcher_by_the_end_of_its_command_line():
    """Test-LauncherProcess tells the task's cmd.exe and conhost.exe by how the task's arguments end."""
    source = (TEMPLATES / "engine" / "processes.ps1").read_text(encoding="utf-8")
    assert "$line.EndsWith(' /c .\\' + $LauncherFile, [StringComparison]::OrdinalIgnoreCase)" in source
    for window in ("hidden", "minimized"):
        layout = Layout(build_spec(**{**CANONICAL, "window": window}))
        assert layout.task_arguments.endswith(" /c .\\" + layout.launcher_file)
