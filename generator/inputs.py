"""How an input of gen-bundle is declared: one record per input, written once.

A bundle's inputs are BundleSpec's fields (generator/spec.py), each carrying its record; the
options of a build that are not inputs of the bundle (where to write, the environment's
sources) are BUILD_OPTIONS below. The command line's options, the library's keyword arguments,
bundle.json's keys and the checks all follow from these records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, eq=False)  # a declaration is itself, not equal to another
class Input:
    flag: str  # on the command line
    help: str  # what --help says of it
    metavar: str | None = None  # what --help shows for its value
    choices: tuple[str, ...] = ()  # shown as [a|b]; the check refuses any other
    default: object = None  # what leaving it out means; --help shows it when it is not None
    required: bool = False  # no default: a bundle needs it (a command of the group does not)
    switch: bool = False  # a flag with no value: given means True
    repeat: bool = False  # a flag given once per item: the items, in order
    env_only: bool = False  # bundle.json records it only for a bundle with --env
    # The value as given, and the inputs checked before it, in, the value to keep out: raises
    # InvalidValue. None for a build option, which generate() reads itself.
    check: Callable[[Any, Mapping[str, Any]], Any] | None = None

    @property
    def shown_metavar(self) -> str | None:
        return "[" + "|".join(self.choices) + "]" if self.choices else self.metavar


# Where a bundle is written when no folder is given.
OUT = "out"

# The options of a build that bundle.json does not record: generate()'s keyword arguments of
# the same names, after the bundle's inputs. (Its cache and progress have no flag: the
# command line takes the cache from GEN_BUNDLE_CACHE_DIR and draws the progress itself.)
BUILD_OPTIONS: dict[str, Input] = {
    "requirements": Input(
        flag="--requirements", metavar="FILE", help="With --env: a file of packages to add, one per line."
    ),
    "lock": Input(
        flag="--lock",
        metavar="FILE",
        help="With --env: build the environment from this pylock.toml (an earlier bundle's) instead of resolving anew.",
    ),
    "offline": Input(
        flag="--offline",
        switch=True,
        default=False,
        help="With --env: use only the cache (GEN_BUNDLE_CACHE_DIR, else ~/.cache/gen-bundle); no network.",
    ),
    "out": Input(flag="--out", metavar="DIR", default=OUT, help="Directory to write the bundle to."),
    "force": Input(
        flag="--force", switch=True, default=False, help="Replace a bundle that an earlier run wrote to --out."
    ),
}
