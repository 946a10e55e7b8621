"""What a hostile state file costs to load: peak memory and CPU time of a fresh `lanai
validate` process on the example state with a YAML alias bomb of 7, 9 and 12 levels
(9**levels values) in webui.yaml and a self-referencing alias, as ratios to the example
state itself measured in the same run.

    python -m benchmarks.loader_limits          # a table on stdout
    python -m benchmarks.loader_limits --json

Before reconciler/desired/bounded.py, 7 levels took 1.27 GB and about a minute on 2 busy cores;
each further level multiplies both by nine.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "desired-state"


def alias_bomb(levels: int) -> str:
    lines = ["x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{n}: &x{n} [{', '.join([f'*x{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


# VmHWM: the peak of this process alone (ru_maxrss would carry over the parent's).
PROBE = """
import re, resource, sys
from pathlib import Path
from reconciler.desired.load import InvalidState, load_state
try:
    load_state(Path(sys.argv[1]))
except InvalidState:
    pass
usage = resource.getrusage(resource.RUSAGE_SELF)
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)
print(int(hwm) * 1024, usage.ru_utime + usage.ru_stime)
"""


def measure(state: Path, runs: int) -> tuple[int, float]:
    """(peak bytes, CPU seconds), the smallest of `runs` fresh processes."""
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE, str(state)], check=True,
                             capture_output=True, text=True).stdout.split()
        results.append((int(out[0]), float(out[1])))
    return min(r[0] for r in results), min(r[1] for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cases = {"example state": "", "self-referencing alias": "x-loop: &x [*x]\n"}
    cases.update({f"alias bomb, {n} levels": alias_bomb(n) for n in (7, 9, 12)})
    rows = []
    with tempfile.TemporaryDirectory(prefix="lanai-bench-loader-") as tmp:
        for name, extra in cases.items():
            state = Path(tmp) / "state"
            shutil.rmtree(state, ignore_errors=True)
            shutil.copytree(EXAMPLE, state)
            with (state / "webui.yaml").open("a", encoding="utf-8") as handle:
                handle.write(extra)
            peak, cpu = measure(state, args.runs)
            rows.append({"case": name, "bytes_added": len(extra), "peak_rss_bytes": peak,
                         "cpu_s": round(cpu, 3)})
    base = rows[0]
    for row in rows:
        row["peak_ratio"] = round(row["peak_rss_bytes"] / base["peak_rss_bytes"], 2)
        row["cpu_ratio"] = round(row["cpu_s"] / base["cpu_s"], 2) if base["cpu_s"] else None
    if args.json:
        print(json.dumps({"rows": rows, "python": sys.version.split()[0],
                          "max_rss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss},
                         indent=1))
        return 0
    print(f"{'case':<26} {'bytes':>6} {'peak RSS':>10} {'x base':>7} {'CPU s':>7} {'x base':>7}")
    for row in rows:
        print(f"{row['case']:<26} {row['bytes_added']:>6} "
              f"{row['peak_rss_bytes'] / 2**20:>8.1f}MB {row['peak_ratio']:>7} "
              f"{row['cpu_s']:>7} {row['cpu_ratio']!s:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
