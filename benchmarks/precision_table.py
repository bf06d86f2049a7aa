"""The fp32 against bf16 table of results/published/README.md, from the run records of benchmarks/precision.toml:
mean ± sd over seeds of each final score and of the training seconds, the effect of bf16 with its 95% interval
(a ratio for FID and KID) and the exact permutation p (5 vs 5 seeds), as the report computes them.

    python benchmarks/precision_table.py [RESULTS]      # default: results/published/records
"""

from __future__ import annotations

import sys

from ganbench import statistics as st
from ganbench.report import DisplayTable, load_results
from ganbench.report.render import _md_table
from ganbench.report.verdicts import LOG_SCALE

PROTOCOLS = ("precision-fp32", "precision-bf16")
KEYS = ("fid", "kid_mean", "precision", "recall", "kl_modes", "probe_acc", "train_seconds")


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else "results/published/records"
    loaded = load_results(root, PROTOCOLS)
    runs, warnings = loaded.runs, loaded.warnings
    by = {p: runs[runs.protocol == p] for p in PROTOCOLS}
    rows = []
    for key in KEYS:
        a, b = (by[p][key].astype(float) for p in PROTOCOLS)
        c = st.compare_continuous(b.to_numpy(), a.to_numpy(), log_scale=key in LOG_SCALE)
        rows.append({"score": key, "fp32": f"{a.mean():.4g} ± {a.std():.2g}", "bf16": f"{b.mean():.4g} ± {b.std():.2g}",
                     "bf16 vs fp32": st.format_effect(c), "p": f"{c.p:.2g}", "test": c.test})
    title = f"{len(by[PROTOCOLS[0]])} fp32 and {len(by[PROTOCOLS[1]])} bf16 runs from {root} (mean ± sd over seeds)"
    print(_md_table(DisplayTable(title, ["score", "fp32", "bf16", "bf16 vs fp32", "p", "test"], rows)))
    for w in warnings:
        print(w, file=sys.stderr)


if __name__ == "__main__":
    main()
