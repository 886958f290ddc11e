"""--env's progress, as the CLI shows it on stderr while the environment is built.

On a terminal one line is redrawn (the wheel, a bar of its bytes); otherwise, in a log or a CI
job, a plain line per step. The library reports the steps (``generator.environment.Step``) and
knows nothing of how they are shown.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from .figures import size_mb

if TYPE_CHECKING:
    from .environment import Step

BAR_CELLS = 24
REDRAW_SECONDS = 0.1  # a terminal line is redrawn at most this often while a wheel downloads


class BuildProgress:
    """Called with each step of the build; writes to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.drawn = 0  # the width of the line last drawn on the terminal; 0: none is open
        self.last_draw = 0.0

    def __call__(self, step: Step) -> None:
        wheel = f"[{step.index}/{step.count}] {step.name} {step.version}"
        if step.stage == "resolve":
            self.line("Resolving the packages for the target with uv...")
        elif step.stage == "wheel" and self.live:
            if time.monotonic() - self.last_draw >= REDRAW_SECONDS:
                self.draw(f"{wheel}  {bar(step.received, step.size)}")
        elif step.stage == "wheel-done":
            how = "from the cache" if step.cached else "downloaded"
            text = f"{wheel}: {size_mb(step.received)} {how}"
            if self.live:
                self.draw(text)
            else:
                self.line(text)
        elif step.stage == "layout":
            self.line(f"Laying out the {step.count} packages as an environment...")

    def draw(self, text: str) -> None:
        """Redraw the terminal's current line: the old text overwritten, padded to its width."""
        self.stream.write("\r" + text.ljust(self.drawn))
        self.stream.flush()
        self.drawn = max(self.drawn, len(text))
        self.last_draw = time.monotonic()

    def line(self, text: str) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.drawn = 0
        self.stream.write(text + "\n")
        self.stream.flush()


def bar(received: int, size: int | None) -> str:
    """'[##########..............] 4.1/9.8 MB', or '4.1 MB' when the size is not known."""
    if not size:
        return size_mb(received)
    filled = min(BAR_CELLS, BAR_CELLS * received // size)
    return f"[{'#' * filled}{'.' * (BAR_CELLS - filled)}] {size_mb(received).removesuffix(' MB')}/{size_mb(size)}"
