"""The values whose type a PowerShell script fixes, and the .NET and CIM members it uses on them.

A script names .NET types in type literals (``[IO.File]::OpenRead($p)``, ``[xml]$text``,
``catch [IO.IOException]``), in ``New-Object T(...)`` and ``-as [T]``; it gets CIM instances from
Get-CimInstance, Get-ScheduledTask and Get-NetTCPConnection. From there the type of a value
follows the script: a variable assigned such a value, a method's return type, a property's
type, the elements of an array or collection, ``$_`` in a Where-Object block, a function's
``return``, and a function's parameter when every call passes the same type. Every member used
on such a value must exist - on the type or, since PowerShell binds at run time, on a type
derived from it - with an overload that takes as many arguments as the call gives.

What PowerShell adds to every object is allowed anywhere (about_Intrinsic_Members: .Count,
.Length, .ForEach(), .Where(), .PSObject...). XML documents and hashtables are adapted (a
child element or a key reads as a property): only their methods are checked. A value whose
type the script does not fix (an automatic variable, a COM object, a cmdlet's output that is
not listed here) is not checked: nothing here guesses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import netref, pwsh
from .pscommands import editions

# about_Type_Accelerators (reference/5.1): the accelerators for .NET Framework types.
ACCELERATORS = {
    "array": "System.Array",
    "bool": "System.Boolean",
    "byte": "System.Byte",
    "char": "System.Char",
    "datetime": "System.DateTime",
    "decimal": "System.Decimal",
    "double": "System.Double",
    "float": "System.Single",
    "single": "System.Single",
    "guid": "System.Guid",
    "hashtable": "System.Collections.Hashtable",
    "int": "System.Int32",
    "int32": "System.Int32",
    "int16": "System.Int16",
    "long": "System.Int64",
    "int64": "System.Int64",
    "sbyte": "System.SByte",
    "string": "System.String",
    "cultureinfo": "System.Globalization.CultureInfo",
    "bigint": "System.Numerics.BigInteger",
    "securestring": "System.Security.SecureString",
    "timespan": "System.TimeSpan",
    "uint16": "System.UInt16",
    "uint32": "System.UInt32",
    "uint64": "System.UInt64",
    "uri": "System.Uri",
    "version": "System.Version",
    "void": "System.Void",
    "ipaddress": "System.Net.IPAddress",
    "ipendpoint": "System.Net.IPEndPoint",
    "physicaladdress": "System.Net.NetworkInformation.PhysicalAddress",
    "regex": "System.Text.RegularExpressions.Regex",
    "xml": "System.Xml.XmlDocument",
    "type": "System.Type",
    "mailaddress": "System.Net.Mail.MailAddress",
    "x509certificate": "System.Security.Cryptography.X509Certificates.X509Certificate",
    "x500distinguishedname": "System.Security.Cryptography.X509Certificates.X500DistinguishedName",
    "objectsecurity": "System.Security.AccessControl.ObjectSecurity",
    "adsi": "System.DirectoryServices.DirectoryEntry",
    "adsisearcher": "System.DirectoryServices.DirectorySearcher",
    "wmiclass": "System.Management.ManagementClass",
    "wmi": "System.Management.ManagementObject",
    "wmisearcher": "System.Management.ManagementObjectSearcher",
}
# The same page's accelerators for PowerShell's own types (System.Management.Automation,
# Microsoft.Management.Infrastructure): valid names, whose members are PowerShell's, not .NET
# Framework's. The 7.x-only ones ([ordered] as a type, [semver], [uint], [short]...) are not here:
# Windows PowerShell 5.1 knows [ordered] only before a hash literal (about_Hash_Tables).
POWERSHELL_TYPES = frozenset(
    {
        "alias",
        "allowemptycollection",
        "allowemptystring",
        "allownull",
        "argumentcompleter",
        "cimclass",
        "cimconverter",
        "ciminstance",
        "cimsession",
        "cimtype",
        "cmdletbinding",
        "dsclocalconfigurationmanager",
        "dscproperty",
        "dscresource",
        "initialsessionstate",
        "nullstring",
        "outputtype",
        "parameter",
        "powershell",
        "psaliasproperty",
        "pscredential",
        "pscustomobject",
        "psdefaultvalue",
        "pslistmodifier",
        "psmoduleinfo",
        "psnoteproperty",
        "psobject",
        "psprimitivedictionary",
        "psscriptmethod",
        "psscriptproperty",
        "pstypenameattribute",
        "psvariable",
        "psvariableproperty",
        "ref",
        "runspace",
        "runspacefactory",
        "scriptblock",
        "supportswildcards",
        "switch",
        "validatecount",
        "validatedrive",
        "validatelength",
        "validatenotnull",
        "validatenotnullorempty",
        "validatepattern",
        "validaterange",
        "validatescript",
        "validateset",
        "validatetrusteddata",
        "validateuserdrive",
        "wildcardpattern",
    }
)
POWERSHELL_NAMESPACES = (
    "system.management.automation.",
    "microsoft.management.infrastructure.",
    "microsoft.powershell.",
)
# about_Intrinsic_Members: what PowerShell gives every object.
INTRINSIC = frozenset(
    {"count", "length", "foreach", "where", "psobject", "pstypenames", "psbase", "psadapted", "psextended"}
)
# Values PowerShell adapts: an XML element's children and a hashtable's keys read as properties.
ADAPTED = (
    "System.Xml.",
    "System.Collections.Hashtable",
    "System.Collections.Specialized.OrderedDictionary",
    "System.Collections.IDictionary",
)
# What CimInstance itself has, on every CIM value (Microsoft.Management.Infrastructure.CimInstance),
# and the property PowerShell adds to each one.
CIM_INTRINSIC = frozenset(
    {"cimclass", "ciminstanceproperties", "cimsystemproperties", "psshowcomputername", "pscomputername"}
)
# Cmdlets whose output the checks type: the CIM class they return, or the .NET type.
CIM_SOURCES = {
    "get-scheduledtask": "MSFT_ScheduledTask",
    "get-netnettcpconnection": "MSFT_NetTCPConnection",
    "get-nettcpconnection": "MSFT_NetTCPConnection",
}
NET_SOURCES = {
    "get-acl": "System.Security.AccessControl.FileSystemSecurity",
    "get-date": "System.DateTime",
    "get-process": "System.Diagnostics.Process",
}
PASS_THROUGH = frozenset({"where-object", "sort-object", "select-object"})


@dataclass(frozen=True)
class Value:
    """A .NET type (``net``: a full name, ``[]`` for arrays) or a CIM class (``cim``), maybe many."""

    kind: str
    name: str
    many: bool = False

    def element(self) -> Value:
        """One of many CIM instances, or the element of a .NET array (see Checker.element)."""
        if self.kind == "net" and self.name.endswith("[]"):
            return Value("net", self.name[:-2])
        return Value(self.kind, self.name)


@dataclass(frozen=True)
class Use:
    """One use of a member on a typed value, or of a type name."""

    what: str  # "type", "static", "instance", "new", "cim-class", "cim-property", "cim-method", "assembly"
    line: int
    receiver: str  # the type or class
    member: str
    args: int | None = None
    setting: bool = False
    editions: frozenset = frozenset({"5.1", "7.4"})


def _text(node) -> str:
    return node.text.decode()


def _child(node, *types):
    return next((c for c in node.children if c.type in types), None)


def _args(argument_list) -> int:
    """How many arguments a method call's (...) passes: PowerShell splits them at top-level commas."""
    inner = _child(argument_list, "argument_expression_list")
    if inner is None:
        return 0
    return sum(1 for c in inner.children if c.type == "argument_expression")


class Checker:
    """Types the values of one script and lists every member use, with the problems found."""

    def __init__(self, tree, ref: netref.NetRef, cim: dict, loaded: frozenset[str]) -> None:
        self.tree, self.ref, self.cim, self.loaded = tree, ref, cim, loaded
        self.root = tree.root_node
        self.nodes = list(pwsh.walk(self.root))
        self.functions = {
            _text(_child(n, "function_name")).lower(): n for n in self.nodes if n.type == "function_statement"
        }
        self.assignments: dict[tuple, list] = {}
        self.params: dict[tuple[str, str], Value] = {}
        self.returns: dict[str, Value] = {}
        self.uses: list[Use] = []
        self.problems: list[str] = []

    # -- types of type literals ----------------------------------------------------------
    def literal(self, name: str) -> tuple[str, netref.Type | None]:
        """('net', Type) for a .NET Framework type, ('ps', None) for PowerShell's own, ('', None) unknown."""
        bare = name.strip()
        if bare.startswith("[") and bare.endswith("]"):
            bare = bare[1:-1].strip()  # a type literal's brackets
        base = re.sub(r"\[.*$", "", bare).lower()
        array = bare.endswith("[]")
        if base in ACCELERATORS:
            found = self.ref.find_type(ACCELERATORS[base] + ("[]" if array else ""))
            return ("net", found) if found is not None else ("", None)
        if (
            base in POWERSHELL_TYPES
            or base.startswith(POWERSHELL_NAMESPACES)
            or ("system." + base).startswith(POWERSHELL_NAMESPACES)
        ):
            return "ps", None
        found = self.ref.find_type(bare)
        return ("net", found) if found is not None else ("", None)

    # -- the typing pass -----------------------------------------------------------------
    def scope(self, node) -> str:
        return pwsh._enclosing_function(node) or ""

    def run(self) -> list[str]:
        for _ in range(4):  # parameters typed from call sites, then what follows from them (a call chain three deep)
            self._collect_assignments()
            self._type_parameters()
            self._type_returns()
        self._check()
        return self.problems

    def _collect_assignments(self) -> None:
        self.assignments = {}
        for node in self.nodes:
            if node.type == "assignment_expression":
                left = node.children[0]
                variables = [n for n in pwsh.walk(left) if n.type == "variable"]
                if len(variables) != 1 or _text(left).strip() != _text(variables[0]):
                    continue  # $a.b = ..., $a[0] = ...: no new type for $a
                name = _text(variables[0])[1:].lower().split(":")[-1]
                if name == "null":
                    continue  # $null = ...: the value is thrown away
                value = self.type_of(node.children[-1])
                self.assignments.setdefault((self.scope(node), name), []).append((node.start_byte, value))
            elif node.type == "foreach_statement":
                variable = _child(node, "variable")
                source = _child(node, "pipeline")
                if variable is not None and source is not None:
                    value = self.type_of(source)
                    name = _text(variable)[1:].lower()
                    self.assignments.setdefault((self.scope(node), name), []).append(
                        (node.start_byte, self.element(value))
                    )

    def _type_parameters(self) -> None:
        """A function's parameter has a type when every call that passes it passes that type."""
        from .pscommands import calls, functions

        signatures = functions(self.tree)
        seen: dict[tuple[str, str], set] = {}
        for call in calls(self.tree):
            signature = signatures.get(call.name.lower())
            if signature is None:
                continue
            for parameter, value in _bind_arguments(call, signature):
                key = (call.name.lower(), parameter.lower())
                seen.setdefault(key, set()).add(self.type_of(value) if value is not None else None)
        self.params = {key: next(iter(types)) for key, types in seen.items() if len(types) == 1 and None not in types}

    def _type_returns(self) -> None:
        for name, function in self.functions.items():
            found = {
                self.type_of(_child(n, "pipeline"))
                for n in pwsh.walk(function)
                if n.type == "flow_control_statement"
                and _text(n).startswith("return ")
                and pwsh._enclosing_function(n) == name
            }
            if len(found) == 1 and None not in found:
                self.returns[name] = found.pop()

    def variable(self, node) -> Value | None:
        name = _text(node)[1:].lower()
        if name in ("null", "true", "false"):
            return None
        if name in ("_", "psitem"):
            return self._pipeline_item(node)
        if name.startswith("env:") or ":" in name.split("script:")[-1]:
            return None
        name = name.split(":")[-1]
        scope = self.scope(node)
        for key in ((scope, name), ("", name)):
            before = [v for at, v in self.assignments.get(key, []) if at < node.start_byte or key[0] != scope]
            if before:
                return before[-1]
            if key[0] == scope and scope and (scope, name) in self.params:
                return self.params[(scope, name)]
        return None

    def chain_type(self, parts) -> Value | None:
        """A pipeline's output: its first element's, carried through Where-Object, Sort-Object
        and Select-Object; any other command downstream gives what that command gives."""
        value = self.type_of(parts[0]) if parts else None
        for part in parts[1:]:
            if not (part.type == "command" and pwsh._command_name(part) in PASS_THROUGH):
                value = self.type_of(part)
        return value

    def _pipeline_item(self, node) -> Value | None:
        """$_ in the script block of a command that is piped into: an element of what comes in."""
        parent = node.parent
        while parent is not None and parent.type != "script_block_expression":
            parent = parent.parent
        command = parent
        while command is not None and command.type != "command":
            command = command.parent
        if command is None or pwsh._command_name(command) not in PASS_THROUGH | {"foreach-object"}:
            return None
        chain = command.parent
        if chain is None or chain.type != "pipeline_chain":
            return None
        parts = [c for c in chain.children if c.type != "|"]
        upstream = parts[: parts.index(command)] if command in parts else []
        return self.element(self.chain_type(upstream)) if upstream else None

    def element(self, value: Value | None) -> Value | None:
        """What foreach, a pipeline or [0] gets from a value: one CIM instance of many; the
        element of an array; of a generic collection, its type argument; of another .NET
        collection, the type of its indexer (AuthorizationRuleCollection -> AuthorizationRule)."""
        if value is None:
            return None
        if value.kind != "net" or value.name.endswith("[]"):
            return value.element()
        generic = re.fullmatch(r"[^<]+<([^<>,]+)>", value.name)
        if generic:
            return Value("net", generic[1])
        found = self.ref.resolve(value.name)
        if found is None:
            return None
        indexers = [m for m in found.members("Item", static=False) if m.kind == "property" and m.min_args == 1]
        return Value("net", indexers[0].type) if len(indexers) == 1 else value

    def type_of(self, node) -> Value | None:  # noqa: C901 - one case per kind of expression
        if node is None:
            return None
        kind = node.type
        if kind in ("assignment_value", "pipeline"):
            inner = [c for c in node.children if c.type not in ("comment",)]
            return self.type_of(inner[0]) if len(inner) == 1 else None
        if kind == "pipeline_chain":
            return self.chain_type([c for c in node.children if c.type != "|"])
        if kind in ("unary_expression", "argument_expression", "logical_argument_expression"):
            return self.type_of(node.children[0]) if len(node.children) == 1 else None
        if kind in ("parenthesized_expression", "sub_expression", "array_expression"):
            inner = _child(node, "pipeline", "statement_list")
            if inner is not None and inner.type == "statement_list":
                statements = [c for c in inner.children if c.type == "pipeline"]
                inner = statements[-1] if len(statements) == 1 else None
            value = self.type_of(inner)
            return Value(value.kind, value.name, True) if value is not None and kind == "array_expression" else value
        if kind == "variable":
            return self.variable(node)
        if kind == "type_literal":
            return None  # a type itself, not a value of it
        if kind == "cast_expression":
            found = self.literal(_text(_child(node, "type_literal")))
            return Value("net", found[1].full_name) if found[0] == "net" else None
        if kind == "expression_with_unary_operator":
            cast = _child(node, "cast_expression")
            return self.type_of(cast) if cast is not None else None
        if kind == "comparison_expression":
            operator = _child(node, "comparison_operator")
            if operator is not None and _text(operator).lower() == "-as":
                found = self.literal(_text(node.children[-1]))
                return Value("net", found[1].full_name) if found[0] == "net" else None
            return None
        if kind == "additive_expression" and len(node.children) == 3 and _text(node.children[1]) == "+":
            left, right = self.type_of(node.children[0]), self.type_of(node.children[2])
            return left if left is not None and left == right and left.many else None
        if kind == "element_access":
            return self.element(self.type_of(node.children[0]))
        if kind in ("member_access", "invocation_expression"):
            return self._member_type(node)
        if kind == "command":
            return self._command_type(node)
        return None

    def _command_type(self, node) -> Value | None:
        name = pwsh._command_name(node)
        if name is None:
            return None
        elements = [
            c
            for c in (_child(node, "command_elements").children if _child(node, "command_elements") else [])
            if c.type != "command_argument_sep"
        ]
        if name == "get-ciminstance":
            cls = _named_or_positional(elements, ("classname", "class"), 0)
            return Value("cim", cls, True) if cls else None
        if name == "invoke-cimmethod":
            target = _named(elements, ("inputobject", "ciminstance"))
            method = _named_or_positional(elements, ("methodname", "name"), 2)
            value = self.type_of(target) if target is not None else None
            return Value("cim", f"{value.name}.{method}") if value is not None and value.kind == "cim" else None
        if name in CIM_SOURCES:
            return Value("cim", CIM_SOURCES[name], True)
        if name in NET_SOURCES:
            return Value("net", NET_SOURCES[name])
        if name == "new-object":
            if _named(elements, ("comobject",)) is not None:
                return None
            type_name = _named_or_positional(elements, ("typename",), 0)
            found = self.literal(type_name) if type_name else ("", None)
            return Value("net", found[1].full_name) if found[0] == "net" else None
        if name in self.returns:
            return self.returns[name]
        return None

    def _member_type(self, node) -> Value | None:
        receiver, static, member = _member_parts(node)
        if member is None:
            return None
        if static:
            found = self.literal(_text(receiver))
            if found[0] != "net":
                return None
            if member.lower() == "new":
                return Value("net", found[1].full_name)
            members = found[1].members(member, static=True)
        else:
            value = self.type_of(receiver)
            if value is None:
                return None
            if value.kind == "cim":
                return self._cim_property_type(value, member)
            found_type = self.ref.resolve(value.name)
            if found_type is None:
                return None
            members = found_type.members(member, static=False)
        types = {m.type for m in members if m.kind in ("method", "property", "field")}
        if len(types) != 1:
            return None
        return _value_of_net(types.pop())

    def _cim_property_type(self, value: Value, member: str) -> Value | None:
        entry = self.cim.get(value.name.split(".")[0] if "." not in value.name else value.name)
        if entry is None:
            return None
        embedded = entry.get("embedded", {}).get(member.lower())
        if embedded is None:
            return None
        return Value("cim", embedded.rstrip("[]"), embedded.endswith("[]"))

    # -- the checks ----------------------------------------------------------------------
    def _check(self) -> None:
        assemblies_added = self._assemblies_added()
        for node in self.nodes:
            reach = editions(node)
            if node.type == "type_literal" and node.parent is not None:
                self._check_literal(node, reach, assemblies_added)
            elif node.type in ("member_access", "invocation_expression"):
                self._check_member(node, reach)
            elif node.type == "command":
                self._check_command(node, reach, assemblies_added)

    def _assemblies_added(self) -> list[tuple[int, str]]:
        added = []
        for node in self.nodes:
            if node.type == "command" and pwsh._command_name(node) == "add-type":
                elements = [c for c in _child(node, "command_elements").children if c.type != "command_argument_sep"]
                name = _named(elements, ("assemblyname", "an"))
                if name is not None:
                    added.append((node.start_byte, _text(name).strip("'\"")))
        return added

    def _need_assembly(self, found: netref.Type, node, added) -> None:
        if found.assembly in self.loaded:
            return
        if any(at < node.start_byte and name.lower() == found.assembly.lower() for at, name in added):
            return
        self.problems.append(
            f"line {node.start_point[0] + 1}: [{found.full_name}] is in {found.assembly}, which Windows PowerShell "
            f"5.1 does not load by itself: Add-Type -AssemblyName {found.assembly} first"
        )

    def _check_literal(self, node, reach, added) -> None:
        name = _text(node)
        if name.strip()[1:-1].strip().lower() == "ordered":
            after = node.next_sibling
            if after is None or not any(n.type == "hash_literal_expression" for n in (after, *after.children)):
                self.problems.append(
                    f"line {node.start_point[0] + 1}: [ordered] stands only before a hash "
                    "literal in Windows PowerShell 5.1"
                )
            return
        kind, found = self.literal(name)
        self.uses.append(Use("type", node.start_point[0] + 1, name, "", editions=reach))
        if "5.1" not in reach:
            return
        if kind == "":
            self.problems.append(
                f"line {node.start_point[0] + 1}: {name} is no type of .NET Framework 4.8 or of PowerShell"
            )
        elif kind == "net":
            self._need_assembly(found.element or found if found.element else found, node, added)

    def _check_member(self, node, reach) -> None:
        receiver, static, member = _member_parts(node)
        if member is None or "5.1" not in reach:
            return
        line = node.start_point[0] + 1
        call = node.type == "invocation_expression"
        count = _args(_child(node, "argument_list")) if call else None
        setting = (
            node.parent is not None
            and node.parent.type == "unary_expression"
            and node.parent.parent is not None
            and node.parent.parent.type == "left_assignment_expression"
        )
        if static:
            kind, found = self.literal(_text(receiver))
            if kind != "net":
                return
            if member.lower() == "new":
                self.uses.append(Use("new", line, found.full_name, "new", count, editions=reach))
                if not any(netref.accepts(m, count) for m in found.constructors()):
                    self.problems.append(
                        f"line {line}: [{found.full_name}]::new() takes no {count} arguments in .NET Framework 4.8"
                    )
                return
            self.uses.append(Use("static", line, found.full_name, member, count, setting, reach))
            self._judge(found, member, True, call, count, setting, line)
            if call:
                self._null_strings(found, member, _child(node, "argument_list"), count, line)
            return
        value = self.type_of(receiver)
        if value is None:
            return
        if value.kind == "cim":
            self._check_cim_member(value, member, call, line, reach)
            return
        if value.name.startswith(ADAPTED) and not call:
            return
        found = self.ref.resolve(value.name)
        if found is None:
            return
        self.uses.append(Use("instance", line, found.full_name, member, count, setting, reach))
        self._judge(found, member, False, call, count, setting, line)

    def _judge(self, found: netref.Type, member: str, static: bool, call: bool, count, setting, line) -> None:
        candidates = [found] if static else [found, *self._derived(found)]
        members = [m for t in candidates for m in t.members(member, static=static)]
        where = f"[{found.full_name}]{'::' if static else '.'}{member}"
        if not members and not static and member.lower() in INTRINSIC:
            return  # PowerShell's own, on every object
        if call:
            methods = [m for m in members if m.kind == "method"]
            if not methods:
                self.problems.append(f"line {line}: {where}() is no method in .NET Framework 4.8")
            elif not any(netref.accepts(m, count) for m in methods):
                self.problems.append(f"line {line}: {where}() takes no {count} arguments in .NET Framework 4.8")
            return
        values = [m for m in members if m.kind in ("property", "field")]
        if not values:
            self.problems.append(f"line {line}: {where} is no property or field in .NET Framework 4.8")
        elif setting and not any(m.settable for m in values):
            self.problems.append(f"line {line}: {where} cannot be set in .NET Framework 4.8")

    def _null_strings(self, found: netref.Type, member: str, arguments, count, line) -> None:
        """A literal $null given where every overload that takes this many arguments has a string:
        PowerShell converts $null to "" for a string parameter of a .NET method (only
        [NullString]::Value is null), which .NET then refuses, e.g. as a path."""
        inner = _child(arguments, "argument_expression_list") if arguments is not None else None
        if inner is None:
            return
        texts = [_text(c).strip().lower() for c in inner.children if c.type == "argument_expression"]
        methods = [m for m in found.members(member, static=True) if m.kind == "method" and netref.accepts(m, count)]
        for at, text in enumerate(texts):
            if (
                text == "$null"
                and methods
                and all(at < len(m.parameters) and m.parameters[at].type == "System.String" for m in methods)
            ):
                self.problems.append(
                    f'line {line}: [{found.full_name}]::{member}() gets $null for a string, which PowerShell passes as ""'
                )

    def _derived(self, found: netref.Type) -> list[netref.Type]:
        """Types derived from ``found`` in its own assembly: PowerShell binds a member on the
        object's own type, which the API that made it (in that assembly) chose - an
        AuthorizationRule from FileSystemSecurity is a FileSystemAccessRule."""
        cache = getattr(self, "_derived_cache", None)
        if cache is None:
            cache = self._derived_cache = {}
        if found.full_name not in cache:
            derived = []
            for record in self.ref._records.values():
                if (
                    record.get("base")
                    and record["kind"] == "class"
                    and record["assembly"] == found.assembly
                    and "`" not in record["name"]
                ):  # a generic definition is no object's type
                    candidate = self.ref._definition(record["name"])
                    if candidate is not None and found in candidate._lineage()[1:]:
                        derived.append(candidate)
            cache[found.full_name] = derived
        return cache[found.full_name]

    def _check_command(self, node, reach, added) -> None:
        name = pwsh._command_name(node)
        elements = [
            c
            for c in (_child(node, "command_elements").children if _child(node, "command_elements") else [])
            if c.type != "command_argument_sep"
        ]
        line = node.start_point[0] + 1
        if name == "new-object" and "5.1" in reach and _named(elements, ("comobject",)) is None:
            type_name = _named_or_positional(elements, ("typename",), 0)
            kind, found = self.literal(type_name) if type_name else ("", None)
            if kind == "":
                self.problems.append(f"line {line}: New-Object {type_name}: no such type in .NET Framework 4.8")
                return
            if kind != "net":
                return
            self._need_assembly(found, node, added)
            arguments = _named(elements, ("argumentlist", "args")) or _positional(elements, 1)
            count = _list_count(arguments)
            self.uses.append(Use("new", line, found.full_name, "new", count, editions=reach))
            if not any(netref.accepts(m, count) for m in found.constructors()):
                self.problems.append(
                    f"line {line}: New-Object {found.full_name} takes no {count} arguments in .NET Framework 4.8"
                )
        elif name == "get-ciminstance":
            cls = _named_or_positional(elements, ("classname", "class"), 0)
            namespace = _named(elements, ("namespace",))
            namespace = _text(namespace).strip("'\"").lower() if namespace is not None else "root\\cimv2"
            entry = self.cim.get(cls or "")
            self.uses.append(Use("cim-class", line, cls or "?", "", editions=reach))
            if entry is None:
                self.problems.append(f"line {line}: CIM class {cls} is not in the table of classes the scripts read")
                return
            if entry["namespace"].lower() != namespace:
                self.problems.append(f"line {line}: {cls} is in {entry['namespace']}, not {namespace}")
            query = _named(elements, ("filter",))
            if query is not None:
                for prop in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|<>|!=|<|>|\bLIKE\b)", _text(query)):
                    self._check_cim_member(Value("cim", cls), prop, False, line, reach)
        elif name == "invoke-cimmethod":
            target = _named(elements, ("inputobject", "ciminstance"))
            method = _named_or_positional(elements, ("methodname", "name"), 2)
            value = self.type_of(target) if target is not None else None
            if value is not None and value.kind == "cim":
                self._check_cim_member(value.element(), method or "?", True, line, reach)

    def _check_cim_member(self, value: Value, member: str, call: bool, line: int, reach) -> None:
        entry = self.cim.get(value.name)
        self.uses.append(Use("cim-method" if call else "cim-property", line, value.name, member, editions=reach))
        if entry is None:
            self.problems.append(f"line {line}: CIM class {value.name} is not in the table of classes the scripts read")
            return
        if member.lower() in CIM_INTRINSIC or member.lower() in INTRINSIC:
            return
        names = {m.lower() for m in (entry.get("methods", {}) if call else entry["properties"])}
        if member.lower() not in names:
            what = "method" if call else "property"
            self.problems.append(f"line {line}: {value.name} has no {what} {member} (table: {entry['doc']})")


def _value_of_net(type_name: str) -> Value:
    return Value("net", type_name.removesuffix("&"))


def _member_parts(node):
    """(receiver node, static?, member name) of ``a.b``, ``a.b()``, ``[T]::b`` and ``[T]::b()``."""
    name = _child(node, "member_name")
    if name is None or name.child_count and name.children[0].type != "simple_name":
        return None, False, None
    static = any(c.type == "::" for c in node.children)
    return node.children[0], static, _text(name)


def _named(elements, names):
    for i, element in enumerate(elements):
        if element.type == "command_parameter" and _text(element).lstrip("-").rstrip(":").lower() in names:
            return elements[i + 1] if i + 1 < len(elements) else None
    return None


# The switches of the cmdlets typed here (New-Object, Get-CimInstance, Invoke-CimMethod, Add-Type):
# what follows one of them is an argument, not its value.
SWITCHES = frozenset(
    {"strict", "keyonly", "shallow", "passthru", "ignorewarnings", "whatif", "confirm", "verbose", "debug"}
)


def _positional(elements, index):
    """The index-th element that is neither a parameter nor a parameter's value."""
    free, i = [], 0
    while i < len(elements):
        if elements[i].type == "command_parameter":
            name = _text(elements[i]).lstrip("-").rstrip(":").lower()
            takes = i + 1 < len(elements) and elements[i + 1].type != "command_parameter" and name not in SWITCHES
            i += 2 if takes else 1
            continue
        free.append(elements[i])
        i += 1
    return free[index] if index < len(free) else None


def _named_or_positional(elements, names, index) -> str | None:
    node = _named(elements, names) or _positional(elements, index)
    return _text(node).strip("'\"") if node is not None else None


def _list_count(node) -> int:
    """How many constructor arguments New-Object's -ArgumentList gets: ``(a, b)`` two, ``(, a)`` one."""
    if node is None:
        return 0
    if node.type == "argument_list":
        inner = _child(node, "argument_expression_list")
        if inner is None:
            return 0
        parts = [c for c in inner.children if c.type == "argument_expression"]
        if len(parts) == 1 and _text(parts[0]).lstrip().startswith(","):
            return 1
        return len(parts)
    return 1


def _bind_arguments(call, signature):
    """(parameter name, value node) of a call to one of the script's functions."""
    from .pscommands import _resolve

    items = [c for c, _ in call.elements]
    positional = [p for p in signature.parameters if p.position_in("(All)") is not None]
    bound, i, free = [], 0, []
    while i < len(items):
        if items[i].type == "command_parameter":
            parameter, _ = _resolve(signature, _text(items[i]).lstrip("-").rstrip(":"))
            if parameter is None or parameter.switch:
                i += 1
                continue
            bound.append((parameter.name, items[i + 1] if i + 1 < len(items) else None))
            i += 2
        else:
            free.append(items[i])
            i += 1
    named = {name for name, _ in bound}
    slots = [p.name for p in positional if p.name not in named]
    bound += list(zip(slots, free, strict=False))  # more arguments than positions: the binder says so
    return bound
