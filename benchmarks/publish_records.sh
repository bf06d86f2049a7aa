#!/usr/bin/env bash
# Copy a study's run records into results/published/records (no checkpoints; the last sample grid of seed 0,
# which the HTML report shows): bash benchmarks/publish_records.sh PROTOCOL. Runs still training (or
# interrupted) are left out: only results are published.
set -euo pipefail
proto=$1
for d in results/study/$proto/*/seed-*; do
  grep -q '"status": "\(complete\|diverged\)"' "$d/summary.json" 2>/dev/null || { echo "skipped (not finished): $d"; continue; }
  dst=results/published/records/${d#results/study/}
  mkdir -p "$dst"
  for f in spec.json metrics.jsonl summary.json probe.json; do [ -f "$d/$f" ] && cp "$d/$f" "$dst/"; done
  chmod 644 "$dst"/*
  if [ "$(basename "$d")" = seed-0 ]; then
    last=$(ls "$d/samples"/step-*.png | sort | tail -1); mkdir -p "$dst/samples"; cp "$last" "$dst/samples/"; chmod 644 "$dst/samples/"*
  fi
done
