"""The task definition: valid against both published schemas, and least privilege."""

from __future__ import annotations

import pytest
from lxml import etree

from conftest import render_bundle

NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


def parse(data: bytes):
    return etree.fromstring(data)


def task_for(**inputs) -> bytes:
    return render_bundle(**inputs)["py.task.xml"]


# What changes the task XML: the scope (who it runs for) and the window (which console host).
SCOPES = {"machine": {}, "user": {"scope": "user", "user": "CONTOSO\\alice"}}
WINDOWS = ["hidden", "minimized"]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_validates_against_both_schemas(xsd_schemas, scope, window):
    doc = parse(task_for(window=window, **SCOPES[scope]))
    for name, schema in xsd_schemas.items():
        assert schema.validate(doc), f"{name}: {schema.error_log}"


def skeleton(data: bytes) -> bytes:
    """The task as the schemas see it, less the free-text description (any xs:string)."""
    doc = parse(data)
    doc.find("t:RegistrationInfo/t:Description", NS).text = ""
    return etree.tostring(doc, method="c14n")


def test_the_schema_matrix_covers_what_changes_the_xml():
    """Each scope x window pair gives its own XML, and the other inputs that do not
    name the bundle (auth, port, paths) change no more than the description: were
    that to change, the matrix above would have to grow."""
    variants = {
        (scope, window): task_for(window=window, **inputs) for scope, inputs in SCOPES.items() for window in WINDOWS
    }
    assert len({skeleton(data) for data in variants.values()}) == len(variants)
    user_doc = parse(variants["user", "hidden"])
    assert user_doc.findtext("t:Principals/t:Principal/t:UserId", namespaces=NS) == "CONTOSO\\alice"
    base = skeleton(variants["machine", "hidden"])
    for other in ({"auth": "none"}, {"port": 8080}, {"notebook_dir": "D:\\Data"}, {"python": "D:\\Py\\python.exe"}):
        assert skeleton(task_for(**other)) == base, f"{other} changes the task XML: add it to the schema matrix"


@pytest.mark.parametrize("window", ["hidden", "minimized"])
def test_the_action_needs_no_quoting_through_conhost(window):
    """Whatever %ProgramFiles% expands to, no field of the action holds a quote or a space,
    so both ways conhost joins its client's fields give cmd.exe the same line
    (test_start_chain.py runs that line)."""
    from support.chain import Action, escape_argument

    action = Action.from_task_xml(task_for(window=window))
    program = "conhost.exe" if window == "hidden" else "cmd.exe"
    assert action.command == "%SystemRoot%\\System32\\" + program
    assert action.working_directory == "%ProgramFiles%\\gen-bundle\\py"
    assert '"' not in action.arguments
    fields = action.arguments.split(" ")
    assert fields[0] == ("--headless" if window == "hidden" else "/d")
    assert fields[-1] == ".\\start-py.bat"  # relative to the working directory, and a path
    assert all(escape_argument(field) == field for field in fields)


def test_schemas_reject_a_broken_task(canonical_files, xsd_schemas):
    """The validation can fail: an unknown run level is refused by both."""
    doc = parse(canonical_files["py.task.xml"])
    doc.find("t:Principals/t:Principal/t:RunLevel", NS).text = "Administrator"
    assert not any(schema.validate(doc) for schema in xsd_schemas.values())


def test_declares_utf16_and_is_utf16le_with_bom(canonical_files):
    data = canonical_files["py.task.xml"]
    assert data.startswith(b"\xff\xfe<\x00?\x00x\x00m\x00l\x00")
    text = data[2:].decode("utf-16-le")
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>\r\n')


def test_runs_the_installed_launcher_for_every_user_with_least_privilege(canonical_files):
    doc = parse(canonical_files["py.task.xml"])
    assert doc.findtext("t:Principals/t:Principal/t:GroupId", namespaces=NS) == "S-1-5-32-545"
    assert doc.findtext("t:Principals/t:Principal/t:RunLevel", namespaces=NS) == "LeastPrivilege"
    assert doc.find("t:Triggers/t:LogonTrigger", NS) is not None
    assert doc.find("t:Triggers/t:LogonTrigger/t:UserId", NS) is None
    assert doc.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=NS) == "PT0S"
    assert doc.findtext("t:Settings/t:DisallowStartIfOnBatteries", namespaces=NS) == "false"
    assert doc.findtext("t:Settings/t:StopIfGoingOnBatteries", namespaces=NS) == "false"
    assert doc.findtext("t:Settings/t:Hidden", namespaces=NS) == "false"
    assert doc.findtext("t:RegistrationInfo/t:URI", namespaces=NS) == "\\gen-bundle\\py"
    assert doc.find("t:Settings/t:RestartOnFailure", NS) is None  # restarts are the launcher's job
