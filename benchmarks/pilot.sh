#!/usr/bin/env bash
# The pilot (benchmarks/pilot.toml) in two lanes of one run each, in the order that decides the budget first:
# the baseline's three seeds, then one seed of each other arm, then their second seeds. Runs resume from their
# checkpoints; finished ones are skipped. Run it at low priority: nice -n 19 bash benchmarks/pilot.sh
set -uo pipefail
results=${RESULTS:-results/study}
lane() { for run in "$@"; do
  ganbench run --suite benchmarks/pilot.toml --variant "${run%:*}" --seed "${run#*:}" --jobs 1 --results "$results"
done; }
lane dcgan:0 dcgan:2 no-bn:0 bn-all:1 adam-lr-1e-3:1 &
lane dcgan:1 bn-all:0 adam-lr-1e-3:0 no-bn:1 &
wait
