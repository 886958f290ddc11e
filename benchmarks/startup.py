"""Start-up benchmark: the canonical command against importing its two dependencies.

    python benchmarks/startup.py [--runs N]

Runs, alternately, ``gen-bundle --ip 127.0.0.13 --name py`` (writing a fresh
bundle each time) and ``python -c "import jinja2, click"`` with the same
interpreter, and prints the median wall time of each and their ratio. The
baseline is what any jinja2+click tool pays; the ratio is what gen-bundle adds.
Target: 1.3 or less.

As pip does when it installs a wheel, the generator package is byte-compiled
first (this matters where PYTHONDONTWRITEBYTECODE is set). The render writes no
template cache (it is pure), so every run compiles the templates it renders:
each run is a first run.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command() -> list[str]:
    script = Path(sys.executable).with_name("gen-bundle")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "generator"]


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (at least 10)")
    runs = max(10, parser.parse_args().runs)
    baseline = [sys.executable, "-c", "import jinja2, click"]
    tool = [*command(), "--ip", "127.0.0.13", "--name", "py"]
    package = Path(importlib.util.find_spec("generator").origin).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    with tempfile.TemporaryDirectory() as work:
        cwd = Path(work)
        timed(baseline, cwd), timed(tool, cwd)  # warm the file system cache
        base_times, tool_times = [], []
        for _ in range(runs):
            shutil.rmtree(cwd / "out", ignore_errors=True)
            base_times.append(timed(baseline, cwd))
            tool_times.append(timed(tool, cwd))
    base, ours = (statistics.median(t) for t in (base_times, tool_times))
    print(f"runs each:                          {runs}")
    print(f"python -c 'import jinja2, click':   {base * 1000:7.1f} ms (median)")
    print(f"gen-bundle --ip 127.0.0.13 --name py: {ours * 1000:5.1f} ms (median)")
    print(f"ratio:                              {ours / base:7.2f}  (target <= 1.30)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
