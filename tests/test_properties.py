"""Property tests: for any accepted input, every file still parses in its
language and gives back exactly the value that went in."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from generator.errors import InvalidValue
from generator.layout import Layout
from generator.render import render
from generator.spec import build_spec
from generator.winpath import ENV_BASES, PER_USER_BASES, RESERVED_NAMES

from conftest import python_constants
from support import pwsh

# Characters Windows allows in a name, weighted towards the ones that mean
# something to cmd.exe, PowerShell, XML or Markdown.
SPECIALS = " &%^!'()`;,=+~@#$[]{}\u2018\u2019\u201a\u201b\u201c\u201d<>"
ALLOWED_SPECIALS = "".join(ch for ch in SPECIALS if ch not in "<>")
NON_ASCII = "éßØЖ日本語ñ\u00a0€"
COMPONENT_CHARS = string.ascii_letters + string.digits + ALLOWED_SPECIALS + NON_ASCII + "-_."


@st.composite
def components(draw):
    text = draw(st.text(alphabet=COMPONENT_CHARS, min_size=1, max_size=12))
    if text[-1] in " .":
        text = text + "x"
    if text.split(".")[0].rstrip(" ").lower() in RESERVED_NAMES or text in (".", ".."):
        text = "x" + text
    return text


@st.composite
def windows_paths(draw, exe=False):
    # python.exe is installed for all users (the broker runs it at boot): no per-user base for it.
    bases = [v for v in ENV_BASES.values() if not (exe and v in PER_USER_BASES)]
    root = draw(st.sampled_from(["C:\\", "D:\\", "\\\\fileserver\\share\\"] + [f"%{v}%\\" for v in bases]))
    parts = draw(st.lists(components(), min_size=1, max_size=4))
    if exe:
        parts.append("python.exe")
    return root + "\\".join(parts)


names = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?", fullmatch=True).filter(
    lambda n: not n.isdigit() and n.lower() != "localhost"
)
ips = (
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
    .filter(lambda t: t not in ((0, 0, 0), (255, 255, 255)))
    .map(lambda t: "127.{}.{}.{}".format(*t))
)
ports = st.integers(1, 65535)
USER_CHARS = string.ascii_letters + string.digits + " &'!^#~-_.\u2018\u2019éЖ日"
accounts = st.tuples(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,10}", fullmatch=True),
    st.text(alphabet=USER_CHARS, min_size=1, max_size=15).map(lambda n: n.strip(" .") or "x"),
).map(lambda t: f"{t[0]}\\{t[1]}")
scopes = st.one_of(st.just(("machine", None)), accounts.map(lambda user: ("user", user)))


@st.composite
def bundle_inputs(draw) -> dict[str, object]:
    """Keyword arguments for build_spec: any accepted combination."""
    scope, user = draw(scopes)
    return {
        "ip": draw(ips),
        "name": draw(names),
        "port": draw(ports),
        "notebook_dir": draw(windows_paths()),
        "python": draw(windows_paths(exe=True)),
        "auth": draw(st.sampled_from(["token", "none"])),
        "window": draw(st.sampled_from(["hidden", "minimized"])),
        "scope": scope,
        "user": user,
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=bundle_inputs())
def test_every_file_parses_and_gives_back_the_inputs(grammars, inputs):
    """No schema needed here: the task XML's own checks are in the test below."""
    ip, name, port, python, user = (inputs[k] for k in ("ip", "name", "port", "python", "user"))
    notebook_dir, auth, window, scope = (inputs[k] for k in ("notebook_dir", "auth", "window", "scope"))
    spec = build_spec(**inputs)
    assert spec.name == name.lower()
    assert str(spec.notebook_dir) in (notebook_dir, notebook_dir.rstrip("\\"))
    files = render(spec)

    # PowerShell: both grammars, and the values read back from the literals.
    install = pwsh.script_text(files["install.ps1"])
    for grammar, parser in grammars.items():
        tree = parser.parse(install)
        assert pwsh.problems(tree) == [], grammar
    values = pwsh.assignments(grammars["tree-sitter-pwsh"].parse(install))
    python_value = values["PythonExe"]
    if isinstance(python_value, tuple):
        assert f"%{python_value[0]}%\\{python_value[1]}" == python
    else:
        assert python_value == python
    assert values["BundleName"] == spec.name and values["BundleIp"] == ip and values["BundlePort"] == str(port)
    assert values["TaskUser"] == (user or "")
    uninstall = grammars["tree-sitter-pwsh"].parse(pwsh.script_text(files["uninstall.ps1"]))
    assert pwsh.problems(uninstall) == []

    # Task XML: well-formed; the name, URL and account read back.
    doc = etree.fromstring(files[Layout(spec).task_file])
    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    assert doc.findtext("t:RegistrationInfo/t:URI", namespaces=ns) == f"\\gen-bundle\\{spec.name}"
    assert Layout(spec).url in doc.findtext("t:RegistrationInfo/t:Description", namespaces=ns)
    if user:
        assert doc.findtext("t:Principals/t:Principal/t:UserId", namespaces=ns) == user
        assert doc.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=ns) == user

    # bundle.json and the hosts block.
    recorded = json.loads(files["bundle.json"])["inputs"]
    assert recorded == {
        "ip": ip,
        "name": spec.name,
        "port": port,
        "notebook_dir": str(spec.notebook_dir),
        "python": python,
        "auth": auth,
        "window": window,
        "scope": scope,
        "user": user,
    }
    assert build_spec(**recorded) == spec
    assert files["hosts.txt"].decode("ascii").split("\r\n")[1] == f"{ip} {spec.name}"

    # The server's Python config: compiles, and its constants read back.
    constants = python_constants(files[Layout(spec).config_file])
    assert (constants["NAME"], constants["URL"], constants["AUTH"]) == (spec.name, Layout(spec).url, auth)
    guard = python_constants(files[Layout(spec).guard_file])
    read_back = (guard["URL"], guard["IP"], guard["PORT"], guard["BROKER_CHANNEL"], guard["BROKER_SID"])
    assert read_back == (Layout(spec).url, ip, port, Layout(spec).broker_channel, Layout(spec).broker_task_sid)

    # README: each value is one Markdown code span holding exactly that value.
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(files["README.md"].decode("utf-8"))
    spans = {
        child.content for token in tokens if token.children for child in token.children if child.type == "code_inline"
    }
    assert {str(spec.notebook_dir), python, ip, spec.name}.issubset(spans)


@settings(max_examples=50, deadline=None)
@given(inputs=bundle_inputs())
def test_every_task_xml_validates_against_both_schemas(xsd_schemas, inputs):
    """Separate from the round trip above, so that only this test needs the XSDs."""
    spec = build_spec(**inputs)
    doc = etree.fromstring(render(spec)[Layout(spec).task_file])
    for schema_name, schema in xsd_schemas.items():
        assert schema.validate(doc), f"{schema_name}: {schema.error_log}"


@settings(max_examples=200, deadline=None)
@given(path=windows_paths())
def test_accepted_paths_keep_their_spelling(path):
    spec = build_spec(ip="127.0.0.13", name="py", notebook_dir=path)
    assert str(spec.notebook_dir) == path


@settings(max_examples=200, deadline=None)
@given(
    path=windows_paths(),
    bad=st.sampled_from(list('"<>|?*') + [chr(c) for c in range(32)] + ["\x7f", "\u2028", "\ud800"]),
    where=st.integers(min_value=3),
)
def test_any_forbidden_character_is_refused(path, bad, where):
    where = min(where, len(path))
    hostile = path[:where] + bad + path[where:]
    with pytest.raises(InvalidValue) as caught:
        build_spec(ip="127.0.0.13", name="py", notebook_dir=hostile)
    assert caught.value.param == "notebook_dir"


@pytest.mark.wine
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(notebook_dir=windows_paths(), python_parts=st.lists(components(), min_size=1, max_size=3))
def test_hostile_paths_survive_wine_cmd_into_argv(wine, notebook_dir, python_parts):
    """The .bat, run by wine's cmd.exe, hands python exactly its path and the launcher's script;
    the launcher's script hands the server the notebook folder in an argument list, which
    Windows' own split of subprocess's join gives back unchanged."""
    import subprocess

    from test_launcher_wine import GONE, Installed

    python = "C:\\" + "\\".join(python_parts) + "\\python.exe"
    spec = build_spec(ip="127.0.0.13", name="py", notebook_dir=notebook_dir, python=python)
    site = Installed(wine, spec)
    result = wine.run_bat(site.bat, plan=GONE)
    assert result.exit_code == 0, result.output
    assert result.argv_records == [site.argv()], result.output
    argv = [python, "-m", "notebook", "--no-browser", f"--ServerApp.root_dir={spec.notebook_dir}", "--config=C:\\x.py"]
    assert wine.split_command_line(subprocess.list2cmdline(argv)) == argv
