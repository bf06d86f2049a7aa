"""The top README's verdict table, rendered from run records (so it cannot drift from them).

    python benchmarks/readme_verdicts.py RESULTS --protocol NAME            # print the table
    python benchmarks/readme_verdicts.py RESULTS --protocol NAME --comparisons M --write README.md

``--write`` replaces what lies between ``<!-- verdicts: NAME RESULTS [M] -->`` and ``<!-- /verdicts -->`` in the
file (the markers stay, the start marker with the family given; ``tests/test_published.py`` checks that the
README's table is the one its records give). ``--comparisons M``: the correction is over the M primary
comparisons of the study's design (``ganbench report --comparisons``), of which the records may hold fewer.
One row per rule: its verdict, then each tested claim's arms with the effect and its 95% interval, how many
seeds of each arm converged, the verdict (an inconclusive one with the smallest effect detectable at 80% power,
MDE), and the confounds; the untested claims with why.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from ganbench.report import build_report
from ganbench.statistics import LOG_RATIO

def _mde(row) -> str:
    """The MDE of an inconclusive verdict, in one test and at the correction's strictest level (underpowered
    ones could not have been decided at all)."""
    if not (isinstance(row.mde, float) and math.isfinite(row.mde)) or row.verdict != "inconclusive":
        return ""
    form = "{:.2f}x" if row.scale == LOG_RATIO else "{:.3g}"
    strict = row.mde_corrected
    corrected = (f" ({form.format(strict)} corrected)" if isinstance(strict, float) and math.isfinite(strict)
                 and strict != row.mde else "")
    return f", MDE {form.format(row.mde)}{corrected}"


def _arm(row) -> str:
    confound = f"; confounded: {row.confounded}" if isinstance(row.confounded, str) and row.confounded else ""
    return (f"`{row.variant}` {row.metric} {row.effect}, converged {row.converged_variant} vs "
            f"{row.converged_baseline}: {row.verdict}{_mde(row)}{confound}")


def render(results: str | Path, protocol: str, family: int | None = None) -> str:
    """The markdown table (header included) for one protocol's records, corrected across ``family``
    comparisons (default: those the records test)."""
    report = build_report(results, protocol=protocol, family=family)
    lines = ["| rule | verdict | each arm against its baseline: primary endpoint, effect [95% interval], seeds "
             "converged, verdict |", "|---|---|---|"]
    for rule in report.rules.itertuples():
        parts = []
        for claim_id, arms in report.claims[report.claims["rule"] == rule.rule].groupby("claim", sort=False):
            if (arms["verdict"] == "untested").all():
                parts.append(f"{claim_id}: untested ({arms['reason'].iloc[0]})")
            else:
                parts.append(f"{claim_id}: " + "; ".join(_arm(r) for r in arms.itertuples()))
        lines.append(f"| {rule.rule} | {rule.verdict} | " + "<br>".join(p.replace("|", "/") for p in parts) + " |")
    return "\n".join(lines)


SECTION = re.compile(r"<!-- verdicts: (\S+) (\S+)(?: (\d+))? -->\n(.*?)\n<!-- /verdicts -->", re.S)


def sections(text: str) -> list[tuple[str, str, int | None, str]]:
    """Every marked section of a README: (protocol, results, family or None, the table in it)."""
    return [(p, r, int(f) if f else None, table) for p, r, f, table in SECTION.findall(text)]


def markers(protocol: str, results: str, family: int | None = None) -> tuple[str, str]:
    return f"<!-- verdicts: {protocol} {results}{f' {family}' if family else ''} -->", "<!-- /verdicts -->"


def write(path: Path, results: str, protocol: str, family: int | None = None) -> None:
    start, end = markers(protocol, results, family)
    text = path.read_text()
    # this protocol's section, whatever family its marker had, to its own end, empty or not
    pattern = re.compile(re.escape(f"<!-- verdicts: {protocol} {results}") + r"(?: \d+)? -->\n.*?" + re.escape(end),
                         re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no '{markers(protocol, results)[0]}' ... '{end}' section to replace")
    path.write_text(pattern.sub(lambda _: f"{start}\n{render(results, protocol, family)}\n{end}", text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--comparisons", type=int, help="the primary comparisons of the study's design")
    ap.add_argument("--write", type=Path, help="replace the marked section of this file (README.md)")
    args = ap.parse_args()
    if args.write:
        write(args.write, args.results, args.protocol, args.comparisons)
    else:
        print(render(args.results, args.protocol, args.comparisons))


if __name__ == "__main__":
    main()
