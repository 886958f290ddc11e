""".NET Framework 4.8's public types and members, read from its reference assemblies.

Why: the rendered scripts run on Windows PowerShell 5.1, which binds .NET Framework 4.8;
the tests run on Debian without either. A type or overload that exists only in .NET
Core (``IO.Path::GetFullPath(a, b)``, ``File::ReadAllBytesAsync``) would fail on the
target only, so the tests look every one up here. The source of truth is the 4.8
reference assemblies that mono-devel installs (generated from Microsoft's), read as
metadata by netref.cs with Mono.Cecil - never mono's own class library, which has
members 4.8 lacks.

Caveats the model does not cover: PowerShell's type accelerators (``[int]``, the
caller maps them), PowerShell's own members (``.Count``, ``.ForEach()``), and which
assemblies Windows PowerShell loads by default (``Type.assembly`` says where a type
lives: System.IO.Compression, for one, needs ``Add-Type -AssemblyName`` first). The
directory also holds assemblies that are not part of .NET Framework 4.8 (Mono.*,
System.Web.Mvc, System.Reactive.*...): they are left out (NOT_FRAMEWORK).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REFERENCE_DIR = Path("/usr/lib/mono/4.8-api")
SOURCE = Path(__file__).with_name("netref.cs")
CECIL_GAC = Path("/usr/lib/mono/gac/Mono.Cecil")
# Assemblies in mono's 4.8-api folder that are no part of .NET Framework 4.8: mono's own, and
# libraries Microsoft ships apart from it (ASP.NET MVC/Web API/Razor, Rx, System.Json). A type
# that only they define is no type a Windows PowerShell script can count on.
NOT_FRAMEWORK = (
    "Mono.",
    "I18N",
    "IBM.Data.DB2.",
    "Novell.",
    "PEAPI.",
    "RabbitMQ.",
    "Commons.Xml.Relaxng.",
    "System.Json",
    "System.Reactive.",
    "System.Web.Mvc.",
    "System.Web.Http",
    "System.Web.Razor.",
    "System.Web.WebPages",
    "System.Net.Http.Formatting.",
    "WebMatrix.Data.",
    "Microsoft.Web.Infrastructure.",
)
# A member's kind, and the list of a type's JSON record that holds its members.
MEMBER_LISTS = (("method", "methods"), ("property", "properties"), ("field", "fields"), ("event", "events"))


def cecil_path() -> Path | None:
    """Mono.Cecil in mono's GAC: 0.11 (mono-devel's own), else the newest there is."""
    found = sorted(CECIL_GAC.glob("0.11*/Mono.Cecil.dll")) or sorted(
        CECIL_GAC.glob("*/Mono.Cecil.dll"), key=lambda dll: _version(dll.parent.name)
    )
    return found[-1] if found else None


def _version(gac_folder: str) -> tuple[int, ...]:
    """'0.11.0.0__0738eb9f132ed756' -> (0, 11, 0, 0): GAC folders sort by version, not text."""
    return tuple(int(part) for part in gac_folder.split("__")[0].split(".") if part.isdigit())


def available() -> str | None:
    """None when everything load() needs is here, else why not (the tests skip, or fail in CI)."""
    for tool in ("mcs", "mono"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (apt-get install mono-devel)"
    if not (REFERENCE_DIR / "mscorlib.dll").is_file():
        return f"no .NET Framework 4.8 reference assemblies in {REFERENCE_DIR} (apt-get install mono-devel)"
    if cecil_path() is None:
        return f"no Mono.Cecil.dll under {CECIL_GAC} (apt-get install libmono-cecil-private-cil)"
    return None


def load(cache_dir: Path) -> NetRef:
    """The model of every assembly directly in REFERENCE_DIR (Facades/ only forwards types).

    The JSON is cached under a key of netref.cs and the assemblies' names and sizes, so
    a second session reads it (about a second) instead of compiling and running again.
    """
    reason = available()
    if reason is not None:
        raise RuntimeError(reason)
    cecil = cecil_path()
    assert cecil is not None
    assemblies = sorted(dll for dll in REFERENCE_DIR.glob("*.dll") if not dll.name.startswith(NOT_FRAMEWORK))
    key = hashlib.sha256(SOURCE.read_bytes())
    key.update(f"{cecil}\n".encode())
    for dll in assemblies:
        key.update(f"{dll.name}\t{dll.stat().st_size}\n".encode())
    cached = cache_dir / f"netref-{key.hexdigest()[:16]}.json"
    if not cached.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as work:
            exe = Path(work) / "netref.exe"
            # Cecil 0.9 has no InterfaceImplementation: netref.cs reads interfaces its way.
            legacy = ["-define:CECIL_09"] if _version(cecil.parent.name) < (0, 10) else []
            _run(["mcs", "-langversion:7", "-nologo", f"-out:{exe}", f"-r:{cecil}", *legacy, str(SOURCE)])
            output = Path(work) / "netref.json"
            output.write_bytes(_run(["mono", str(exe), *map(str, assemblies)]))
            os.replace(output, cached)  # whole or not at all, even with parallel sessions
    return NetRef(json.loads(cached.read_bytes()))


def _run(command: list[str]) -> bytes:
    """stdout of a tool that must succeed; what it said in the error when it does not
    (mcs writes its errors to stdout, mono to stderr)."""
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout)[-4000:].decode(errors="replace").strip()
        raise RuntimeError(f"{command[0]} exited {done.returncode}: {said}")
    return done.stdout


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    optional: bool = False
    params: bool = False  # the last parameter, a params array (ParamArrayAttribute)
    direction: str | None = None  # "out" or "ref" ([ref] in PowerShell)

    def __str__(self) -> str:
        text = f"{self.type} {self.name}"
        if self.direction:
            text = f"{self.direction} {text}"
        if self.params:
            text = f"params {text}"
        return f"[{text}]" if self.optional else text


@dataclass(frozen=True)
class Member:
    kind: str  # method, property, field, event, constructor
    name: str
    declaring_type: str
    static: bool
    min_args: int  # required arguments (a property's: its index parameters)
    max_args: int | None  # None: a params array takes any number
    type: str  # methods: the return type; constructors: the type they make
    settable: bool  # a property with a public setter, a field neither readonly nor const
    parameters: tuple[Parameter, ...] = ()

    def __str__(self) -> str:
        """One overload as C# would write it, for messages and the CLI."""
        static = "static " if self.static else ""
        where = f"{self.declaring_type}.{self.name}"
        if self.kind == "constructor":
            return f"new {self.declaring_type}({', '.join(map(str, self.parameters))})"
        if self.kind == "method":
            return f"{static}{self.type} {where}({', '.join(map(str, self.parameters))})"
        index = f"[{', '.join(map(str, self.parameters))}]" if self.parameters else ""
        access = " { get; set; }" if self.settable else " { get; }" if self.kind == "property" else ""
        return f"{static}{self.kind} {self.type} {where}{index}{access}"


def accepts(member: Member, count: int) -> bool:
    """PowerShell's arity rule: between the required and all parameters (out/ref ones
    included), or any number from the required on when the last is a params array."""
    return member.min_args <= count and (member.max_args is None or count <= member.max_args)


@dataclass(frozen=True)
class Type:
    """A public type of the assemblies, or an array of one (``element`` set)."""

    full_name: str  # as Type.FullName: System.Environment+SpecialFolder, System.Collections.Generic.List`1
    assembly: str  # simple name: mscorlib, System, System.IO.Compression...
    kind: str  # class, struct, enum, interface, delegate (an array is a class)
    base: str | None
    interfaces: tuple[str, ...]  # definitions' names: System.Collections.Generic.IEnumerable`1
    enum_names: tuple[str, ...]
    abstract: bool = False
    static: bool = False
    element: Type | None = None
    _record: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _ref: NetRef | None = field(default=None, repr=False, compare=False)

    def members(self, name: str, *, static: bool) -> list[Member]:
        """Methods, properties, fields and events named ``name`` (any case) that
        ``[Type]::name`` (static) or ``$value.name`` (instance) reaches: this type's,
        then its bases' (an interface's: the interfaces it extends, then System.Object's).
        An override or a hiding member stands for the one it replaces."""
        found: dict[tuple, Member] = {}
        for owner in self._lineage():
            for member in self._ref._declared(owner).get(name.lower(), ()):
                if member.static != static:
                    continue
                signature = (member.kind, member.name.lower(), tuple(p.type for p in member.parameters))
                known = found.get(signature)
                if known is None:
                    found[signature] = member
                elif known.kind == "property" and member.settable and not known.settable:
                    # An override may declare only the getter; the base's setter still works.
                    found[signature] = replace(known, settable=True)
        return list(found.values())

    def constructors(self) -> list[Member]:
        """Public constructors; a struct also has the parameterless one no metadata declares."""
        if self.element is not None:
            rank = self.full_name.rsplit("[", 1)[1].count(",") + 1
            lengths = tuple(Parameter(f"length{i}", "System.Int32") for i in range(rank))
            return [Member("constructor", ".ctor", self.full_name, False, rank, rank, self.full_name, False, lengths)]
        records = self._record.get("constructors", ())
        made = [self._ref._member("constructor", self.full_name, record) for record in records]
        if self.kind in ("struct", "enum") and not any(m.min_args == 0 for m in made):
            made.insert(0, Member("constructor", ".ctor", self.full_name, False, 0, 0, self.full_name, False))
        return made

    def _lineage(self) -> list[Type]:
        """This type and those whose members it shows, nearest first."""
        chain: list[Type] = []
        if self.kind == "interface":
            queue = [self]
            while queue:
                current = queue.pop(0)
                if current not in chain:
                    chain.append(current)
                    queue.extend(t for t in map(self._ref.resolve, current.interfaces) if t is not None)
            chain.extend(t for t in [self._ref.resolve("System.Object")] if t is not None)
            return chain
        current: Type | None = self
        while current is not None and current not in chain:
            chain.append(current)
            current = self._ref.resolve(current.base) if current.base else None
        return chain


class NetRef:
    """The types of the JSON netref.cs writes, looked up the way Windows PowerShell does."""

    def __init__(self, document: dict[str, Any]) -> None:
        # A name defined twice (only in assemblies outside the Framework proper, such as
        # System.Json and System.Json.Microsoft): the first assembly in name order wins.
        self._records: dict[str, dict[str, Any]] = {}
        for record in document["types"]:
            self._records.setdefault(record["name"].lower(), record)
        self._types: dict[str, Type] = {}
        self._members: dict[str, dict[str, list[Member]]] = {}

    def find_type(self, name: str) -> Type | None:
        """A type literal's type, as ``[name]`` finds it: any case, as written, then
        with ``System.`` in front; ``List[string]`` -> the definition ``List`1``;
        ``byte[]`` -> an array of System.Byte. Accelerators ([int]) are the caller's."""
        name, ranks = _split_arrays(name.strip())
        if name.endswith("]"):
            start = _opening(name, "[", "]")
            arguments = _split_top(name[start + 1 : -1])
            name = name[:start].strip()
            if "`" not in name:
                name = f"{name}`{len(arguments)}"
        found = self._definition(name) or self._definition(f"System.{name}")
        return self._arrays(found, ranks)

    def resolve(self, type_full_name: str) -> Type | None:
        """The type a member's type names: ``System.Int32&`` -> Int32, ``X[]`` -> an
        array, ``IEnumerable`1<System.String>`` -> ``IEnumerable`1``; None for a generic
        parameter (``T``), a pointer or a type outside the assemblies."""
        name = type_full_name.strip().removesuffix("&")
        if name.endswith("*"):
            return None
        name, ranks = _split_arrays(name)
        if name.endswith(">"):
            name = name[: _opening(name, "<", ">")]
        return self._arrays(self._definition(name), ranks)

    def _definition(self, name: str) -> Type | None:
        """A defined type by full name, any case (PowerShell's lookup ignores case)."""
        key = name.lower()
        if key not in self._types:
            record = self._records.get(key)
            if record is None:
                return None
            self._types[key] = Type(
                full_name=record["name"],
                assembly=record["assembly"],
                kind=record["kind"],
                base=record.get("base"),
                interfaces=tuple(record.get("interfaces", ())),
                enum_names=tuple(record.get("enum", ())),
                abstract=record.get("abstract", False),
                static=record.get("static", False),
                _record=record,
                _ref=self,
            )
        return self._types[key]

    def _arrays(self, element: Type | None, ranks: list[int]) -> Type | None:
        """``element`` wrapped as an array once per rank: System.Array's members apply."""
        array = self._definition("System.Array")
        for rank in ranks:
            if element is None or array is None:
                return None
            generic = ("System.Collections.Generic.IList`1", "System.Collections.Generic.IReadOnlyList`1")
            element = Type(
                full_name=f"{element.full_name}[{',' * (rank - 1)}]",
                assembly=element.assembly,
                kind="class",
                base="System.Array",
                interfaces=array.interfaces + (generic if rank == 1 else ()),
                enum_names=(),
                element=element,
                _ref=self,
            )
        return element

    def _declared(self, owner: Type) -> dict[str, list[Member]]:
        """The members ``owner`` itself declares, by lower-case name (built on first use)."""
        if owner.full_name not in self._members:
            by_name: dict[str, list[Member]] = {}
            record = owner._record
            for kind, key in MEMBER_LISTS:
                for item in record.get(key, ()):
                    by_name.setdefault(item["name"].lower(), []).append(self._member(kind, owner.full_name, item))
            self._members[owner.full_name] = by_name
        return self._members[owner.full_name]

    @staticmethod
    def _member(kind: str, declaring_type: str, item: dict[str, Any]) -> Member:
        parameters = tuple(
            Parameter(p["name"], p["type"], p.get("optional", False), p.get("params", False), p.get("direction"))
            for p in item.get("params", ())
        )
        required = sum(1 for p in parameters if not (p.optional or p.params))
        takes_any = bool(parameters) and parameters[-1].params
        if kind == "property":
            settable = item.get("set", False)
        else:
            settable = kind == "field" and not (item.get("literal") or item.get("readonly"))
        return Member(
            kind=kind,
            name=item.get("name", ".ctor"),
            declaring_type=declaring_type,
            static=item.get("static", False),
            min_args=required,
            max_args=None if takes_any else len(parameters),
            type=item.get("returns") or item.get("type") or declaring_type,
            settable=settable,
            parameters=parameters,
        )


def _split_arrays(name: str) -> tuple[str, list[int]]:
    """'X[][,]' -> ('X', [1, 2]): the array ranks after a name, innermost first."""
    ranks: list[int] = []
    while name.endswith("]"):
        start = _opening(name, "[", "]")
        inside = name[start + 1 : -1]
        if inside.strip(", ") != "":
            break  # generic arguments, not a rank
        ranks.insert(0, inside.count(",") + 1)
        name = name[:start].rstrip()
    return name, ranks


def _opening(text: str, opening: str, closing: str) -> int:
    """Where the bracket that closes ``text`` opens."""
    depth = 0
    for index in range(len(text) - 1, -1, -1):
        depth += {closing: 1, opening: -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"unbalanced {opening}{closing} in {text!r}")


def _split_top(text: str) -> list[str]:
    """Generic arguments split at the commas outside brackets: 'a,B[c,d]' -> ['a', 'B[c,d]']."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    return parts + [text[start:].strip()]


def main(argv: list[str] | None = None) -> int:
    """``python tests/support/netref.py System.IO.File OpenRead``: the overloads 4.8 has."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("type", help="a type as PowerShell writes it: IO.File, Environment+SpecialFolder")
    parser.add_argument("member", nargs="?", help="a member name; without it, the type and its constructors")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "gen-bundle-netref")
    args = parser.parse_args(argv)
    ref = load(args.cache)
    found = ref.find_type(args.type)
    if found is None:
        print(f"{args.type}: no such type in {REFERENCE_DIR}", file=sys.stderr)
        return 1
    if args.member is None:
        print(f"{found.full_name} ({found.kind}, {found.assembly}) : {found.base or '-'}")
        for name in found.interfaces:
            print(f"  implements {name}")
        if found.enum_names:
            print(f"  values: {', '.join(found.enum_names)}")
        overloads = found.constructors()
    else:
        overloads = found.members(args.member, static=True) + found.members(args.member, static=False)
    for member in overloads:
        print(member)
    if args.member is not None and not overloads:
        print(f"{found.full_name} has no public member {args.member}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
