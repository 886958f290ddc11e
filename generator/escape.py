"""One escaping filter per target language.

Values reach these filters already validated (spec.py), so each filter only
has to write a value so that its language reads back exactly that value. A
filter still refuses characters it cannot express: it never emits a guess.
XML needs no filter here: the .xml templates are autoescaped by Jinja.
"""

from __future__ import annotations

from .winpath import WinPath

# PowerShell closes a single-quoted string on any of these, not only on "'".
PS_QUOTES = "'\u2018\u2019\u201a\u201b"


def _refuse_controls(value: str, language: str) -> None:
    if any(ord(ch) < 32 or ch == "\x7f" for ch in value):
        raise ValueError(f"{value!r} holds a control character that {language} cannot carry")


def bat(value: str | WinPath) -> str:
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
    if '"' in value:
        raise ValueError(f"{value!r}: cmd.exe cannot quote a double quote")
    _refuse_controls(value, "cmd.exe")
    escaped = value.replace("%", "%%")
    trailing = len(escaped) - len(escaped.rstrip("\\"))
    return escaped + "\\" * trailing


def ps(value: str | int | WinPath) -> str:
    """A PowerShell expression for the value: a single-quoted literal, or
    ``Join-Path $env:BASE '...'`` for a path that starts with a variable."""
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
    _refuse_controls(value, "PowerShell")
    out = []
    for ch in value:
        out.append(ch + ch if ch in PS_QUOTES else ch)
    return "'" + "".join(out) + "'"


def md(value: str | int | WinPath) -> str:
    """A Markdown code span: shown verbatim, whatever backticks the value holds."""
    text = str(value)
    _refuse_controls(text, "Markdown")
    longest = run = 0
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
