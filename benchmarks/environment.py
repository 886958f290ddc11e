"""--env build time and size: a cold cache against a warm one, in the same run.

    python benchmarks/environment.py [--python-version 3.13]

Builds the default environment (notebook) for Windows x64 three ways, each with the
command line a user types, and prints the wall time of each, the ratio of the warm
builds to the cold one, and the sizes:

- cold: a new, empty cache (uv resolves against the index, every wheel is downloaded);
- warm: the same cache, resolving again (uv's cached index pages may be revalidated);
- offline: the same cache, from the first bundle's lock, with --offline (no network at all).

Needs the network for the cold build; nothing is kept after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path


def gen_bundle(out: Path, cache: Path, version: str, *extra: str) -> float:
    command = [
        sys.executable,
        "-m",
        "generator",
        "--ip",
        "127.0.0.13",
        "--name",
        "py",
        "--env",
        "--python-version",
        version,
        "--python",
        f"%ProgramFiles%\\Python{version.replace('.', '')}\\python.exe",
        "--out",
        str(out),
        *extra,
    ]
    started = time.monotonic()
    subprocess.run(
        command,
        check=True,
        env={**os.environ, "GEN_BUNDLE_CACHE_DIR": str(cache)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.13")
    version = parser.parse_args().python_version
    work = Path(tempfile.mkdtemp(prefix="gen-bundle-env-bench-"))
    try:
        cache = work / "cache"
        cold = gen_bundle(work / "cold", cache, version)
        warm = gen_bundle(work / "warm", cache, version)
        lock = str(work / "cold" / "pylock.toml")
        offline = gen_bundle(work / "offline", cache, version, "--offline", "--lock", lock)
        archive = work / "cold" / "python-env.zip"
        entries = zipfile.ZipFile(archive).infolist()
        sbom = json.loads((work / "cold" / "sbom.cdx.json").read_text())
        wheels = sum(path.stat().st_size for path in (cache / "wheels").rglob("*.whl"))
        same = all((work / name / "python-env.zip").read_bytes() == archive.read_bytes() for name in ("offline",))
        print(f"environment for Windows x64, CPython {version}: {len(sbom['components'])} packages (SBOM components)")
        print(f"  wheels downloaded      {wheels / 1e6:8.1f} MB")
        print(
            f"  python-env.zip         {archive.stat().st_size / 1e6:8.1f} MB, {len(entries)} files, "
            f"{sum(e.file_size for e in entries) / 1e6:.1f} MB extracted"
        )
        print(f"  bundle folder in all   {sum(p.stat().st_size for p in (work / 'cold').iterdir()) / 1e6:8.1f} MB")
        print(f"  cold cache             {cold:8.2f} s   (baseline)")
        print(f"  warm cache, resolving  {warm:8.2f} s   ratio {warm / cold:.2f}")
        print(f"  warm cache, --offline  {offline:8.2f} s   ratio {offline / cold:.2f}   same archive: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
