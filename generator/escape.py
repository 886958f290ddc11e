"""The escaping filters, per target language and place in the file.

Values reach these filters already validated (spec.py), so each filter only
has to write a value so that its language reads back exactly that value. A
filter still refuses characters it cannot express: it never emits a guess.

Each language has a filter for code (a literal the program reads back) and
one for text (comments, help, prose, log lines), because the two places end
on different characters: a PowerShell block comment on ``#>``, a Markdown
paragraph on emphasis, a batch line on ``&``. render.py refuses to write a
value that went through no filter of its file's language (see FILTERS); XML
needs none, the .xml templates are autoescaped by Jinja.
"""

from __future__ import annotations

import re

from .winpath import WinPath

# PowerShell closes a single-quoted string on any of these, not only on "'".
PS_QUOTES = "'\u2018\u2019\u201a\u201b"


_CONTROL = r"[\x00-\x1f\x7f]"  # one search in C: a render passes some 500 values through here


def _refuse_controls(value: str, language: str) -> None:
    if not value.isprintable() and re.search(_CONTROL, value):  # printable text holds none: no search
        raise ValueError(f"{value!r} holds a control character that {language} cannot carry")


def bat(value: str | int | WinPath) -> str:
    """Text for inside a double-quoted cmd.exe argument, just before its closing quote.

    Inside quotes cmd takes & | < > ^ ( ) ! literally (delayed expansion is
    off in the launcher), but still expands %, so % is doubled. Backslashes
    before the closing quote are doubled too: program argument parsing reads
    ``\\"`` as a literal quote, so ``"C:\\"`` would reach python as ``C:"``.
    """
    if isinstance(value, WinPath):
        if value.base is None:
            return bat(value.rest)
        prefix = f"%{value.base}%"  # the one expansion we mean
        return prefix + ("\\" + bat(value.rest) if value.rest else "")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"{value!r}: not text, a number or a path")
    if '"' in value:
        raise ValueError(f"{value!r}: cmd.exe cannot quote a double quote")
    _refuse_controls(value, "cmd.exe")
    escaped = value.replace("%", "%%")
    trailing = len(escaped) - len(escaped.rstrip("\\"))
    return escaped + "\\" * trailing


def bat_text(value: str | int | WinPath) -> str:
    """Bare text on a batch line (``rem`` and ``echo``): every character cmd.exe
    acts on outside quotes is escaped with ``^``, and % is doubled, except the
    one expansion a path's variable base means."""
    if isinstance(value, WinPath):
        if value.base is None:
            return bat_text(value.rest)
        return f"%{value.base}%" + ("\\" + bat_text(value.rest) if value.rest else "")
    text = str(value)
    if '"' in text:
        raise ValueError(f"{text!r}: a double quote would change how cmd.exe reads the rest of the line")
    _refuse_controls(text, "cmd.exe")
    return "".join("%%" if ch == "%" else "^" + ch if ch in "^&|<>()" else ch for ch in text)


def ps(value: object) -> str:
    """A PowerShell expression for the value: a single-quoted literal, an array
    ``@(...)`` or a hashtable ``@{...}`` of them, or ``Join-Path $env:BASE '...'`` for a
    path that starts with a variable."""
    if isinstance(value, dict):
        return "@{ " + "; ".join(f"{ps(key)} = {ps(item)}" for key, item in value.items()) + " }"
    if isinstance(value, (tuple, list)):
        return "@(" + ", ".join(ps(item) for item in value) + ")"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, WinPath):
        if value.base is None:
            return ps(value.rest)
        if not value.rest:
            return f"$env:{value.base}"
        return f"(Join-Path $env:{value.base} {ps(value.rest)})"
    if not isinstance(value, str):
        raise TypeError(f"{value!r}: not a value PowerShell literals are made of")
    _refuse_controls(value, "PowerShell")
    out = []
    for ch in value:
        out.append(ch + ch if ch in PS_QUOTES else ch)
    return "'" + "".join(out) + "'"


def ps_text(value: str | int | WinPath) -> str:
    """Text inside a comment or the comment-based help: nothing may close the
    block comment (``#>``), open another (``<#``), or end the line."""
    text = str(value)
    _refuse_controls(text, "a PowerShell comment")
    if "#>" in text or "<#" in text:
        raise ValueError(f"{text!r} would end or open a PowerShell block comment")
    return text


# Characters that may start Markdown markup inside a paragraph; a backslash makes each literal.
MD_SPECIAL = "\\`*_[]<>|~#!{}&"
_MD_ESCAPES = str.maketrans({ch: "\\" + ch for ch in MD_SPECIAL})


def md_text(value: str | int | WinPath) -> str:
    """Prose: the value reads as itself, never as emphasis, a link, HTML or a table cell border."""
    text = str(value)
    _refuse_controls(text, "Markdown")
    return text.translate(_MD_ESCAPES)


def md_code(value: str | int | WinPath) -> str:
    """Text inside a code span or fenced block that the template opens and closes:
    shown verbatim, so only a backtick (which would close it) is refused."""
    text = str(value)
    _refuse_controls(text, "Markdown")
    if "`" in text:
        raise ValueError(f"{text!r} would close the Markdown code span it is written into")
    return text


# Mermaid's entity codes (decimal, "#35;") for what would end or change a quoted label: the
# quote itself, '#' (which starts a code), and what its HTML labels or Markdown's fence would read.
_MERMAID_CODES = str.maketrans({ch: f"#{ord(ch)};" for ch in '"#&<>`'})


def md_mermaid(value: str | int | WinPath) -> str:
    """Text inside a quoted label of a Mermaid diagram, in a fenced block the template opens and
    closes: shown as itself, each character Mermaid would read as markup given as its code."""
    text = str(value)
    _refuse_controls(text, "Markdown")
    return text.translate(_MERMAID_CODES)


def md(value: str | int | WinPath) -> str:
    """A Markdown code span: shown verbatim, whatever backticks the value holds."""
    text = str(value)
    _refuse_controls(text, "Markdown")
    longest = 0
    if "`" in text:  # the longest run of backticks, which the fence must outnumber
        run = 0
        for ch in text:
            run = run + 1 if ch == "`" else 0
            longest = max(longest, run)
    fence = "`" * (longest + 1)
    if text.startswith(("`", " ")) or text.endswith(("`", " ")):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def py(value: str | int) -> str:
    """A Python literal for the value (the server's configuration file)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{value!r}: only strings and integers are written into Python")
    return repr(value)


def py_text(value: str | int | WinPath) -> str:
    """Text inside a raw triple-quoted Python string (a docstring): no quote can close it,
    and no backslash can escape its closing quotes."""
    text = str(value)
    _refuse_controls(text, "Python")
    if '"' in text or text.endswith("\\"):
        raise ValueError(f"{text!r} would end the Python string it is written into")
    return text


def hosts(value: str) -> str:
    """A line of the hosts file: printable ASCII, so the file is the same bytes in every code page."""
    if not isinstance(value, str) or not value.isascii():
        raise ValueError(f"{value!r}: the hosts file holds ASCII only")
    _refuse_controls(value, "the hosts file")
    return value


def xml_value(value: object) -> object:
    """Before Jinja's autoescape: XML 1.0 cannot hold control characters at all."""
    _refuse_controls(str(value), "XML")
    return value
