"""What check found: each finding names a file and says what is wrong with it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import __version__


@dataclass(frozen=True)
class Finding:
    file: str
    problem: str


@dataclass
class Report:
    bundle: str
    bundle_version: str
    this_version: str = __version__
    signed_by: str | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.findings

    def as_json(self) -> str:
        return json.dumps(
            {
                "bundle": self.bundle,
                "identical": self.identical,
                "generator": {"bundle": self.bundle_version, "this": self.this_version},
                "signed_by": self.signed_by,
                "findings": [{"file": f.file, "problem": f.problem} for f in self.findings],
            },
            indent=2,
        )

    def as_text(self) -> str:
        if self.identical:
            signed = f", signed by {self.signed_by}" if self.signed_by else ""
            return (
                f"{self.bundle}: every file matches SHA256SUMS and is what gen-bundle {self.this_version} "
                f"renders from bundle.json{signed}"
            )
        lines = [f"{self.bundle}: {len(self.findings)} difference(s):"]
        lines += [f"  {f.file}: {f.problem}" for f in self.findings]
        return "\n".join(lines)
