"""How an option of a render is declared: one record per option, written once.

The bundle's inputs are BundleSpec's fields (generator/spec.py), each carrying its Option in
the field's metadata, beside its check; the options of a build that are not inputs of the
bundle (where to write, the environment's sources) are BUILD_OPTIONS below. The command line's
options, the library's keyword arguments and bundle.json's keys follow from these records.
"""

from __future__ import annotations

from typing import NamedTuple

from .constants import CACHE_FOLDER, CACHE_VARIABLE


class Option(NamedTuple):  # a NamedTuple: a third of a frozen dataclass's start-up cost
    flag: str  # on the command line
    help: str  # what --help says of it ("With --env: " is put before it when it needs --env)
    metavar: str | None = None  # what --help shows for its value
    choices: tuple[str, ...] = ()  # shown as [a|b]; the check refuses any other
    default: object = None  # what leaving it out means; --help shows it when it is not None
    required: bool = False  # no default: a bundle needs it (a command of the group does not)
    switch: bool = False  # a flag with no value: given means True
    repeat: bool = False  # a flag given once per item: the items, in order
    # Only with --env: refused without it (spec.BundleSpec, api.generate), and bundle.json
    # records the input only for a bundle with --env.
    needs_env: bool = False

    @property
    def shown_metavar(self) -> str | None:
        return "[" + "|".join(self.choices) + "]" if self.choices else self.metavar

    @property
    def shown_help(self) -> str:
        return ("With --env: " if self.needs_env else "") + self.help + ("  [required]" if self.required else "")

    def given(self, value: object) -> bool:
        """Whether ``value`` is more than leaving the option out (None, False, or no items)."""
        if isinstance(value, (tuple, list)):
            return len(value) > 0
        return value is not None and value is not False


# Where a bundle is written when no folder is given.
OUT = "out"

# The options of a build that bundle.json does not record: generate()'s keyword arguments of
# the same names, after the bundle's inputs. (Its cache and progress have no flag: the command
# line takes the cache from GEN_BUNDLE_CACHE_DIR and draws the progress itself.)
BUILD_OPTIONS: dict[str, Option] = {
    "requirements": Option(
        flag="--requirements", metavar="FILE", needs_env=True, help="a file of packages to add, one per line."
    ),
    "lock": Option(
        flag="--lock",
        metavar="FILE",
        needs_env=True,
        help="build the environment from this pylock.toml (an earlier bundle's) instead of resolving anew.",
    ),
    "offline": Option(
        flag="--offline",
        switch=True,
        default=False,
        needs_env=True,
        help=f"use only the cache ({CACHE_VARIABLE}, else $XDG_CACHE_HOME/{CACHE_FOLDER} or "
        f"~/.cache/{CACHE_FOLDER}); no network.",
    ),
    "out": Option(flag="--out", metavar="DIR", default=OUT, help="Directory to write the bundle to."),
    "force": Option(
        flag="--force", switch=True, default=False, help="Replace a bundle that an earlier run wrote to --out."
    ),
}
