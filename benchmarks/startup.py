"""Start-up benchmark: gen-bundle as installed from its wheel, against importing its two dependencies.

    python benchmarks/startup.py [--runs N] [--wheel PATH]

Builds the wheel (or takes --wheel), installs it with pip into a new venv made by this
interpreter (pip byte-compiles it, as any installation does), and times, in that venv:

- the first run after installation: ``gen-bundle --ip 127.0.0.13 --name py``, once in each
  of 5 fresh installations (median), each against the baseline run just before it;
- the canonical run, the same command, N times;
- ``gen-bundle check out`` of the default bundle, N times;

each against ``python -c "import jinja2, click"`` in the same venv, and prints the ratios.
Each canonical run is paired with a baseline run beside it (which goes first alternates), and
the ratio is the median of the N pairs' ratios: on a shared virtual machine the speed of the
whole machine drifts within a minute by a fifth and more, which moves a baseline and the run
beside it alike, and a ratio of two medians over the whole run not. The ratio of the medians
is printed too. Targets: canonical 1.25, first run 1.35, check 1.5 (readability first below them).

With valgrind installed it also counts the instructions of one canonical run and one
baseline (callgrind): a figure that does not drift, for telling a change's effect from the
machine's. The wheel carries the templates compiled, in one module (generator/precompile.py):
no run compiles a template, and none writes a cache.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"canonical": 1.25, "first run": 1.35, "check": 1.50}


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def counted(baseline: list[str], canonical: list[str], cwd: Path) -> tuple[int, int] | None:
    """The instructions one run of each executes (valgrind's callgrind), or None without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    counts = []
    for argv in (baseline, canonical):
        shutil.rmtree(cwd / "out", ignore_errors=True)
        run = subprocess.run(
            [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"Collected : ([0-9]+)", run.stderr)
        if found is None:
            return None
        counts.append(int(found.group(1)))
    return counts[0], counts[1]


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
    parser.add_argument("--runs", type=int, default=30, help="runs of each command (at least 10)")
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
        for run in range(runs):
            shutil.rmtree(cwd / "out", ignore_errors=True)
            pair = ("baseline", "canonical") if run % 2 == 0 else ("canonical", "baseline")
            for name in pair:
                times[name].append(timed(baseline if name == "baseline" else canonical, cwd))
            times["check"].append(timed([tool, "check", "out"], cwd))
        instructions = counted(baseline, canonical, cwd)
    paired = {
        name: statistics.median([mine / base for mine, base in zip(times[name], times["baseline"], strict=True)])
        for name in ("canonical", "check")
    }
    base = statistics.median(times["baseline"])
    ratios = {"canonical": paired["canonical"], "first run": statistics.median(first_ratios), "check": paired["check"]}
    print(f"runs each: {runs}; baseline python -c 'import jinja2, click': {base * 1000:.1f} ms (median)")
    for name, label in (
        ("canonical", "gen-bundle --ip 127.0.0.13 --name py"),
        ("check", "gen-bundle check out               "),
    ):
        median = statistics.median(times[name])
        print(
            f"  {name:10} {label}  {median * 1000:6.1f} ms  ratio {ratios[name]:.2f}  (target <= {TARGETS[name]}; "
            f"ratio of the medians {median / base:.2f})"
        )
    print(
        f"  first run after installation (5 installs)                 "
        f"ratio {ratios['first run']:.2f}  (target <= {TARGETS['first run']})"
    )
    if instructions is not None:
        print(
            f"  instructions (callgrind, one run each): baseline {instructions[0] / 1e6:.1f} M, canonical "
            f"{instructions[1] / 1e6:.1f} M, ratio {instructions[1] / instructions[0]:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
