"""The broker's task (NAME.broker.task.xml in every bundle): valid
against both Task Scheduler schemas, LOCAL SERVICE with its own task SID and one privilege, at
boot; and its action, as Windows splits it, gives the broker the bundle's values."""

from __future__ import annotations

import runpy

import pytest
from lxml import etree

from generator.layout import Layout, task_sid
from generator.render import render
from generator.spec import build_spec

from support.chain import Action, expand

NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


def broker_task(**inputs) -> bytes:
    spec = build_spec(**{"ip": "127.0.0.13", "name": "py", **inputs})
    return render(spec)[Layout(spec).broker_task_file]


@pytest.mark.parametrize("inputs", [{}, {"port": 8080, "name": "lab-2"}, {"python": "D:\\Py 3\\python.exe"}])
def test_validates_against_both_schemas(xsd_schemas, inputs):
    doc = etree.fromstring(broker_task(**inputs))
    for name, schema in xsd_schemas.items():
        assert schema.validate(doc), f"{name}: {schema.error_log}"


def test_local_service_with_its_own_sid_one_privilege_at_boot():
    doc = etree.fromstring(broker_task())
    (principal,) = doc.findall("t:Principals/t:Principal", NS)
    assert principal.findtext("t:UserId", namespaces=NS) == "S-1-5-19"  # LOCAL SERVICE
    assert principal.find("t:LogonType", NS) is None  # the schema has none for a service account
    assert principal.findtext("t:RunLevel", namespaces=NS) == "LeastPrivilege"
    assert principal.findtext("t:ProcessTokenSidType", namespaces=NS) == "Unrestricted"
    privileges = [p.text for p in principal.findall("t:RequiredPrivileges/t:Privilege", NS)]
    assert privileges == ["SeChangeNotifyPrivilege"]
    assert [t.tag.split("}")[1] for t in doc.find("t:Triggers", NS)] == ["BootTrigger"]
    settings = doc.find("t:Settings", NS)
    assert settings.findtext("t:ExecutionTimeLimit", namespaces=NS) == "PT0S"
    assert settings.findtext("t:DisallowStartIfOnBatteries", namespaces=NS) == "false"
    assert settings.findtext("t:StopIfGoingOnBatteries", namespaces=NS) == "false"
    assert settings.findtext("t:Priority", namespaces=NS) in ("4", "5", "6")  # normal priority
    assert doc.findtext("t:RegistrationInfo/t:URI", namespaces=NS) == "\\gen-bundle\\py-broker"
    assert doc.find("t:Actions", NS).get("Context") == principal.get("id")


def test_the_task_sid_is_the_one_windows_gives():
    """Two published ``schtasks /showsid`` outputs (the derivation itself is not documented)."""
    assert task_sid("\\open notepad") == "S-1-5-87-907618518-2201690017-3345919478-1888295809-4191631242"
    assert task_sid("\\\u5907\u4efd\\\u542f\u52a8\u5907\u4efd") == (
        "S-1-5-87-782916017-575545879-3398072960-2725436614-2063171235"
    )
    assert Layout(build_spec(ip="127.0.0.13", name="py")).broker_task_sid == task_sid("\\gen-bundle\\py-broker")


@pytest.mark.wine
@pytest.mark.parametrize("inputs", [{}, {"port": 8080, "name": "lab-2"}, {"python": "D:\\Py 3\\python.exe"}])
def test_the_action_gives_the_broker_its_values(wine, inputs, tmp_path):
    """Task Scheduler expands the %variables% and starts ``Command Arguments`` itself; python.exe
    splits its command line as CommandLineToArgvW does (run here in wine); the broker's own
    argument parser reads what follows the script."""
    spec = build_spec(**{"ip": "127.0.0.13", "name": "py", **inputs})
    layout = Layout(spec)
    action = Action.from_task_xml(broker_task(**inputs))
    environment = wine.environment()
    command = expand(action.command, environment)
    program = f'"{command}"' if " " in command else command
    argv = wine.split_command_line(f"{program} {expand(action.arguments, environment)}")
    assert argv[0] == command
    assert argv[1] == "-I"
    assert argv[2] == expand(str(layout.broker_path), environment)
    program = tmp_path / layout.broker_file  # the bundle's own broker
    program.write_bytes(render(spec)[layout.broker_file])
    broker = runpy.run_path(str(program))
    parsed = broker["parser"]().parse_args(argv[3:])
    assert (parsed.role, parsed.ip, parsed.port, parsed.name) == ("serve", spec.ip, spec.port, spec.name)
    assert parsed.channel == layout.broker_channel
    assert parsed.log == expand(str(layout.broker_log), environment)
    assert " " in parsed.log  # C:\Program Files: the quoting held
