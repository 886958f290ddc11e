"""How a build tells where it is: each step, for whoever shows it (the CLI's progress); the
library itself shows nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# A build's stages, in order: mypy holds every Step made and every stage compared to these.
Stage = Literal["resolve", "wheel", "wheel-done", "layout"]


@dataclass(frozen=True)
class Step:
    """Where a build is, for whoever shows it (the CLI: a bar on a terminal, lines otherwise).

    ``stage``: "resolve" (uv resolves the packages), "wheel" (a wheel is being downloaded:
    ``received`` of ``size`` bytes so far, ``size`` None when neither lock nor server says),
    "wheel-done" (a wheel is in hand, ``cached`` when the cache had it), "layout" (the wheels are
    being laid out into the archive). ``index`` counts the wheels from 1 to ``count``.
    """

    stage: Stage
    index: int = 0
    count: int = 0
    name: str = ""
    version: str = ""
    received: int = 0
    size: int | None = None
    cached: bool = False


Progress = Callable[[Step], None]


def no_progress(step: Step) -> None:
    """The default: a library caller that asked for no report gets none."""
