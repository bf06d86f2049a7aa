#!/usr/bin/env bash
# The decisive CPU study in the order of its design (results/published/README.md): the pilot's remaining runs
# (benchmarks/pilot.sh, two lanes), then stages (b) R2 with its controls and the baseline, (c) R6, (d) R1, R3,
# R4, R5, 3 seeds each, two runs at a time (in one command, in this order); then every arm to the design's 6
# seeds (study.toml's `seeds`), soonest decided first (benchmarks/seed_order.py); then (e) the Fashion-MNIST
# replicate, its arms chosen once from the MNIST records (benchmarks/choose_replicate.py writes
# benchmarks/study-fashion-mnist.toml; commit it), (f) the instability counts (benchmarks/instability.toml) and
# (g) the Stacked-MNIST pilot (benchmarks/stacked-mnist-pilot.toml).
# Every run resumes from its checkpoint and finished runs are skipped (in a fresh checkout, the published records
# are copied in first), so the same command picks up wherever the last session stopped. Run it at low priority:
#   PATH=$PWD/.venv/bin:$PATH GANBENCH_DATA=../shared/datasets nohup nice -n 19 bash benchmarks/study.sh > study.log &
# Publish what finished (records, not checkpoints) at least hourly: bash benchmarks/render_study.sh (the records,
# the study's report and plan, and the README's verdict table, which tests/test_published.py checks against the
# records: publishing records alone would fail it); the pilot's: bash benchmarks/publish_records.sh pilot
set -uo pipefail
results=${RESULTS:-results/study}
stages=("dcgan R2" "R6" "R1 R3 R4 R5")
# every run scores through the classifier the study's first records were scored through (not one trained again
# on this machine, whose other weights move FID by a few per cent): published in results/published/classifiers
python benchmarks/pin_classifiers.py || exit 2
# a fresh checkout has no $results: the published records stand in for the runs they finished (their run_ids
# are the suites'), so those runs are skipped, not trained again; a run folder already here is left alone
for d in results/published/records/{pilot,study,study-fashion-mnist,stacked-mnist-pilot-d-quarter,stacked-mnist-pilot-d-half}/*/seed-*; do
  [ -d "$d" ] || continue
  here=$results/${d#results/published/records/}
  [ -e "$here" ] || { mkdir -p "$(dirname "$here")" && cp -r "$d" "$here"; }
done
bash benchmarks/pilot.sh
run_stages() {  # run_stages N: every stage's arms to N seeds, stage after stage, in one command: runs go in the
  # order of the variants given, and no core waits for the last run of a stage before the next stage starts
  args=()
  for v in ${stages[*]}; do args+=(--variant "$v"); done
  ganbench run --suite benchmarks/study.toml "${args[@]}" --seeds "$1" --jobs 2 --results "$results"
}
run_stages 3                                              # (b), (c), (d)
# the pass to the design's seeds: every arm, the ones the published plan says the extra seeds can decide first
# (benchmarks/seed_order.py), then the stages' order for any arm the plan does not name
stages=("$(python benchmarks/seed_order.py results/published/study-plan.json | tr '\n' ' ')" "${stages[@]}")
run_stages "$(python -c 'import tomllib; print(tomllib.load(open("benchmarks/study.toml", "rb"))["seeds"])')"
replicate=benchmarks/study-fashion-mnist.toml             # (e): its arms chosen once, from the 6-seed records
[ -f $replicate ] || python benchmarks/choose_replicate.py "$results" --protocol study --write $replicate || exit 2
ganbench run --suite $replicate --seeds 3 --jobs 2 --results "$results"
python benchmarks/pin_classifiers.py --publish fashion-mnist-32px-c1-v2
ganbench run --suite $replicate --jobs 2 --results "$results"
ganbench run --suite benchmarks/instability.toml --jobs 2 --results "$results"   # (f)
# (g) Stacked MNIST's pilot: its budget is read off the baseline's mode counts (choose_budget.py --metric modes,
# into results/published/stacked-mnist-pilot/); the stage's study suite is written from that budget
ganbench run --suite benchmarks/stacked-mnist-pilot.toml --jobs 2 --results "$results"
