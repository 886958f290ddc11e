"""PowerShell's own tokenizer rules where it is stricter than the tree-sitter grammars.

Both grammars accept ``"... $name: text"``; PowerShell's tokenizer reads ``$name:`` as a
drive-qualified variable with no name and refuses the whole file
(InvalidVariableReferenceWithDrive). This module scans a script the way PowerShell's
tokenizer does (PowerShell/PowerShell, src/System.Management.Automation/engine/parser/
tokenizer.cs: ScanVariable, ScanStringExpandable, ScanDollarInStringExpandable,
ScanAfterHereStringHeader, ScanPossibleHereStringFooter; CharTraits.cs; VariablePath.cs)
and reports, by the error id of PowerShell's ParserStrings.resx:

- InvalidVariableReferenceWithDrive / InvalidVariableReference: ``$name:`` or ``$global:``
  followed by a character that cannot go on a name (in code, strings and here-strings);
- EmptyVariableReference, OpenBraceNeedsToBeBackTickedInVariableName,
  IncompleteDollarVariableReference: ``${}``, ``${a{b}``, an unclosed ``${``;
- UnexpectedCharactersAfterHereStringHeader: text after ``@"`` / ``@'`` on its line;
- WhitespaceBeforeHereStringFooter: a closing ``"@`` / ``'@`` that is not first on its line;
- TerminatorExpectedAtEndOfString, MissingTerminatorMultiLineComment,
  IncompleteDollarSubexpressionReference: a string, ``<#`` or ``$(`` never closed.

and, for what parses but fails when it runs:

- UnknownVariableDrive: ``$drive:name`` where ``drive`` is no scope or variable drive PowerShell
  knows (about_Scopes, about_Providers): DriveNotFoundException at run time;
- TypographicQuote: U+2018-U+201B and U+201C-U+201E, which PowerShell takes for quote characters
  (CharTraits.IsSingleQuote/IsDoubleQuote) and the grammars do not - allowed only doubled
  inside a single-quoted literal, the escape gen-bundle's ``|ps`` filter writes;
- BacktickBeforeSpace: a backtick followed by blanks at the end of a line, which escapes the
  blank instead of continuing the line (about_Special_Characters).

``variables()`` also returns every variable reference with the exact name PowerShell reads
(``"$name?"`` reads the variable ``name?``), for the VariableIsUndefined check.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
DOUBLE_QUOTES = '"\u201c\u201d\u201e'
TYPOGRAPHIC_QUOTES = SINGLE_QUOTES[1:] + DOUBLE_QUOTES[1:]
# Scopes (about_Scopes; VariablePath.cs) and the variable-like drives of PowerShell's own
# providers (about_Providers: Alias, Environment, Function, Variable); $using: (about_Remote_Variables).
KNOWN_QUALIFIERS = frozenset({"global", "local", "private", "script", "using", "variable", "env", "function", "alias"})
SCOPES = ("global", "local", "private", "script")


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.rule}: {self.text}"


@dataclass(frozen=True)
class Variable:
    name: str  # as PowerShell reads it, qualifier included ("env:TEMP", "name?")
    line: int
    in_string: bool
    splatted: bool

    @property
    def qualifier(self) -> str | None:
        head, sep, _ = self.name.partition(":")
        return head.lower() if sep and head else None

    @property
    def bare(self) -> str:
        """The name without scope (``$script:x`` -> ``x``); a drive-qualified name stays whole."""
        if self.qualifier in SCOPES or self.qualifier == "variable":
            return self.name.split(":", 1)[1]
        return self.name


def _name_char(c: str) -> bool:
    """CharTraits: ASCII letters, digits, '_' and '?' go on a name; beyond ASCII, char.IsLetterOrDigit."""
    if c < "\x80":
        return c.isascii() and (c.isalnum() or c in "_?")
    return unicodedata.category(c) in ("Lu", "Ll", "Lt", "Lm", "Lo", "Nd")


def _variable_start(c: str) -> bool:
    return c != "" and (_name_char(c) or c in "$:^")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.findings: list[Finding] = []
        self.variables: list[Variable] = []

    def line(self, i: int) -> int:
        return self.text.count("\n", 0, i) + 1

    def at(self, i: int) -> str:
        return self.text[i] if i < len(self.text) else ""

    def report(self, rule: str, i: int, text: str) -> None:
        self.findings.append(Finding(rule, self.line(i), text))

    # -- code -------------------------------------------------------------------------
    def code(self, i: int, subexpression: bool = False) -> int:
        """Scans code from i; inside ``$(...)`` returns the index after the matching ')'."""
        depth = 0
        previous = "\n"
        while i < len(self.text):
            c = self.text[i]
            if c == "<" and self.at(i + 1) == "#":
                end = self.text.find("#>", i + 2)
                if end < 0:
                    self.report("MissingTerminatorMultiLineComment", i, "<# never closed by #>")
                    return len(self.text)
                i, previous = end + 2, " "
                continue
            if c == "#" and (previous.isspace() or previous in ";(){}|,&="):
                end = self.text.find("\n", i)
                i = len(self.text) if end < 0 else end
                continue
            if c == "@" and self.at(i + 1) in SINGLE_QUOTES + DOUBLE_QUOTES:
                i = self.here_string(i)
            elif c in SINGLE_QUOTES:
                i = self.single(i)
            elif c in DOUBLE_QUOTES:
                i = self.double(i)
            elif c == "$" and self.at(i + 1) == "(":
                depth += 1
                i += 2
            elif c in "$@" and (_variable_start(self.at(i + 1)) or (c == "$" and self.at(i + 1) == "{")):
                i = self.variable(i, in_string=False)
            elif c == "`":
                j = i + 1
                while self.at(j) in (" ", "\t"):
                    j += 1
                if j > i + 1 and self.at(j) in ("\r", "\n"):
                    self.report("BacktickBeforeSpace", i, "a backtick followed by blanks ends no line")
                i = i + 2
            else:
                if c == "(":
                    depth += 1
                elif c == ")":
                    if depth == 0 and subexpression:
                        return i + 1
                    depth -= 1
                i += 1
            previous = self.text[i - 1] if i > 0 else "\n"
        if subexpression:
            self.report("IncompleteDollarSubexpressionReference", i, "$( never closed")
        return i

    # -- variables ----------------------------------------------------------------------
    def variable(self, i: int, in_string: bool) -> int:
        """ScanVariable: i is at '$' (or '@' for splatting); returns the index after the name."""
        splatted = self.text[i] == "@"
        start, j = i, i + 1
        if self.at(j) == "{":
            j += 1
            name = []
            while True:
                c = self.at(j)
                if c == "":
                    self.report("IncompleteDollarVariableReference", start, "${ never closed by }")
                    return j
                if c == "}":
                    j += 1
                    break
                if c == "`":
                    name.append(self.at(j + 1))
                    j += 2
                    continue
                if c == "{":
                    self.report("OpenBraceNeedsToBeBackTickedInVariableName", j, self.text[start : j + 1])
                name.append(c)
                j += 1
            text = "".join(name)
            if not text:
                self.report("EmptyVariableReference", start, "${}")
                return j
            self.path(text, start, in_string, splatted)
            return j
        first = self.at(j)
        j += 1
        if first in "$?^":
            self.variables.append(Variable(first, self.line(start), in_string, splatted))
            return j
        name = [first]
        while True:
            c = self.at(j)
            if c == ":":
                if self.at(j + 1) == ":":
                    break  # $a::b is a static member
                name.append(c)
                j += 1
            elif c and _name_char(c):
                name.append(c)
                j += 1
            else:
                break
        self.path("".join(name), start, in_string, splatted)
        return j

    def path(self, name: str, at: int, in_string: bool, splatted: bool) -> None:
        """VariablePath: scope or drive before the first ':', the name after it."""
        head, sep, rest = name.partition(":")
        if sep and head:
            if head.lower() in SCOPES + ("variable",) and not rest:
                self.report("InvalidVariableReference", at, f"${name} has no name after its scope")
                return
            if not rest:
                self.report(
                    "InvalidVariableReferenceWithDrive", at, f"${name} is followed by no name: write ${{{head}}}:"
                )
                return
            if head.lower() not in KNOWN_QUALIFIERS:
                self.report("UnknownVariableDrive", at, f"${name}: PowerShell has no scope or variable drive '{head}'")
        self.variables.append(Variable(name, self.line(at), in_string, splatted))

    # -- strings ------------------------------------------------------------------------
    def single(self, i: int) -> int:
        j = i + 1
        while j < len(self.text):
            c = self.text[j]
            if c in SINGLE_QUOTES:
                if self.at(j + 1) in SINGLE_QUOTES and self.at(j + 1) != "":
                    j += 2  # doubled: one literal quote
                    continue
                if c != "'":
                    self.report("TypographicQuote", j, f"U+{ord(c):04X} ends this single-quoted string")
                return j + 1
            j += 1
        self.report("TerminatorExpectedAtEndOfString", i, "a ' string never closed")
        return j

    def double(self, i: int) -> int:
        j = i + 1
        while j < len(self.text):
            c = self.text[j]
            if c in DOUBLE_QUOTES:
                if self.at(j + 1) in DOUBLE_QUOTES and self.at(j + 1) != "":
                    j += 2
                    continue
                if c != '"':
                    self.report("TypographicQuote", j, f"U+{ord(c):04X} ends this double-quoted string")
                return j + 1
            j = self.expandable_char(j)
        self.report("TerminatorExpectedAtEndOfString", i, 'a " string never closed')
        return j

    def expandable_char(self, j: int) -> int:
        """One step inside an expandable string or here-string: '$', a backtick, or a character."""
        c = self.text[j]
        if c == "`":
            return j + 2
        if c == "$":
            if self.at(j + 1) == "(":
                return self.code(j + 2, subexpression=True)
            if _variable_start(self.at(j + 1)) or self.at(j + 1) == "{":
                return self.variable(j, in_string=True)
        if c in "\u2018\u2019\u201a\u201b":
            self.report("TypographicQuote", j, f"U+{ord(c):04X} in a double-quoted string")
        return j + 1

    def here_string(self, i: int) -> int:
        quote = self.text[i + 1]
        expandable = quote in DOUBLE_QUOTES
        j = i + 2
        while self.at(j) in (" ", "\t"):
            j += 1
        if self.at(j) == "\r":
            j += 1
        if self.at(j) != "\n":
            self.report("UnexpectedCharactersAfterHereStringHeader", i, self.text[i : j + 1].strip())
            end = self.text.find("\n", j)
            return len(self.text) if end < 0 else end
        j += 1
        closers = DOUBLE_QUOTES if expandable else SINGLE_QUOTES
        false_footer = None
        line_start = True
        while j < len(self.text):
            c = self.text[j]
            if line_start:
                if c in closers and self.at(j + 1) == "@":
                    return j + 2
                k = j
                while self.at(k) in (" ", "\t"):
                    k += 1
                if k > j and self.at(k) in closers and self.at(k + 1) == "@" and false_footer is None:
                    false_footer = k
            line_start = c == "\n"
            j = self.expandable_char(j) if expandable and not line_start else j + 1
        if false_footer is not None:
            self.report("WhitespaceBeforeHereStringFooter", false_footer, "the closing quote and @ must start the line")
        else:
            self.report("TerminatorExpectedAtEndOfString", i, "a here-string never closed")
        return j


def scan(source: str | bytes) -> tuple[list[Finding], list[Variable]]:
    """Every finding, and every variable reference, of a whole script."""
    if isinstance(source, bytes):
        source = source.decode("utf-8-sig")
    scanner = _Scanner(source)
    scanner.code(0)
    return scanner.findings, scanner.variables


def findings(source: str | bytes) -> list[Finding]:
    return scan(source)[0]


def variables(source: str | bytes) -> list[Variable]:
    return scan(source)[1]
