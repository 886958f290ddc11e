"""Wheel build hook: ship the templates compiled, in one module (generator/precompile.py), inside the wheel."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CompileTemplates(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        sys.path.insert(0, self.root)
        try:
            from generator.compiled import MODULE
            from generator.precompile import compile_all
        finally:
            sys.path.remove(self.root)
        self._scratch = tempfile.TemporaryDirectory()
        target = Path(self._scratch.name) / f"{MODULE}.py"
        compile_all(target)
        build_data["force_include"][str(target)] = f"generator/{MODULE}.py"

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            scratch.cleanup()
