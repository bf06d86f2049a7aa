"""How fast the command line answers: wall time of `ganbench --help`, `ganbench list`, a refused `ganbench run`
(a misspelt variant) and, for scale, `python -c "import torch"` (median of --repeat runs each).

    python benchmarks/startup.py [--repeat 5]

Goals (issue "a CLI that answers in a second"): --help under 0.3 s; list and a refusal no slower than
`import torch` plus 0.5 s. `python -X importtime -m ganbench list` shows where an import's time goes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "ganbench --help": [sys.executable, "-m", "ganbench", "--help"],
    "ganbench list": [sys.executable, "-m", "ganbench", "list"],
    "ganbench run (misspelt variant)": [sys.executable, "-m", "ganbench", "run", "--variant", "dcgam",
                                        "--results", tempfile.gettempdir() + "/ganbench-startup"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"| command | median s | min s | (of {args.repeat}) |\n|---|---|---|---|")
    for name, cmd in COMMANDS.items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True)
            times.append(time.perf_counter() - t0)
        print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} | |")


if __name__ == "__main__":
    main()
