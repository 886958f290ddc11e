"""Start-up benchmark: gen-bundle as installed from its wheel, against importing its two dependencies.

    python benchmarks/startup.py [--runs N] [--wheel PATH]

Builds the wheel (or takes --wheel), installs it with pip into a new venv made by this
interpreter (pip byte-compiles it, as any installation does), and times, in that venv:

- the first run after installation: ``gen-bundle --ip 127.0.0.13 --name py``, once in each
  of 5 fresh installations (median), each against the baseline run just before it;
- the canonical run, the same command, median of N runs;
- ``gen-bundle check out`` of the default bundle, median of N runs;

each against ``python -c "import jinja2, click"`` in the same venv (median of N runs,
alternating with the command), and prints the ratios. Targets: canonical 1.15, first
run 1.3, check 1.5. The wheel carries the templates compiled, in one module (generator/precompile.py):
no run compiles a template, and none writes a cache.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"canonical": 1.15, "first run": 1.30, "check": 1.50}


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def build_wheel(dist: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (wheel,) = dist.glob("gen_bundle-*.whl")
    return wheel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (at least 10)")
    parser.add_argument("--wheel", type=Path, help="an already built wheel")
    options = parser.parse_args()
    runs = max(10, options.runs)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        wheel = options.wheel or build_wheel(root / "dist")
        first_ratios = []
        for install in range(5):
            venv = root / f"venv{install}"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], check=True)
            python, tool = str(venv / "bin" / "python"), str(venv / "bin" / "gen-bundle")
            baseline = [python, "-c", "import jinja2, click"]
            canonical = [tool, "--ip", "127.0.0.13", "--name", "py"]
            cwd = root / f"run{install}"
            cwd.mkdir()
            timed(baseline, cwd)  # the interpreter and jinja2/click in the file system cache
            base_first = timed(baseline, cwd)
            first_ratios.append(timed(canonical, cwd) / base_first)
        times: dict[str, list[float]] = {"baseline": [], "canonical": [], "check": []}
        for _ in range(runs):
            shutil.rmtree(cwd / "out", ignore_errors=True)
            times["baseline"].append(timed(baseline, cwd))
            times["canonical"].append(timed(canonical, cwd))
            times["check"].append(timed([tool, "check", "out"], cwd))
    base = statistics.median(times["baseline"])
    ratios = {
        "canonical": statistics.median(times["canonical"]) / base,
        "first run": statistics.median(first_ratios),
        "check": statistics.median(times["check"]) / base,
    }
    print(f"runs each: {runs}; baseline python -c 'import jinja2, click': {base * 1000:.1f} ms (median)")
    print(
        f"  canonical  gen-bundle --ip 127.0.0.13 --name py  {statistics.median(times['canonical']) * 1000:6.1f} ms  "
        f"ratio {ratios['canonical']:.2f}  (target <= {TARGETS['canonical']})"
    )
    print(
        f"  first run after installation (5 installs)                 "
        f"ratio {ratios['first run']:.2f}  (target <= {TARGETS['first run']})"
    )
    print(
        f"  gen-bundle check out                           {statistics.median(times['check']) * 1000:6.1f} ms  "
        f"ratio {ratios['check']:.2f}  (target <= {TARGETS['check']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
