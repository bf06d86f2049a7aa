#!/usr/bin/env bash
# Publish the decisive study's finished runs and re-render everything made from them:
#   bash benchmarks/render_study.sh
# records (no checkpoints) -> results/published/records/study/, the report as md, html and csv
# (results/published/study.*), the seeds plan (study-plan.json) and, where README.md has the marked section
# <!-- verdicts: study results/published/records --> ... <!-- /verdicts -->, the README's verdict table.
set -euo pipefail
bash benchmarks/publish_records.sh study
out=results/published
for f in md html csv; do
  ganbench report --results $out/records --protocol study --format $f --out $out/study.$f
done
ganbench plan $out/records --protocol study --format json > $out/study-plan.json.tmp
mv $out/study-plan.json.tmp $out/study-plan.json
if grep -q '<!-- verdicts: study results/published/records -->' README.md; then
  python benchmarks/readme_verdicts.py $out/records --protocol study --write README.md
fi
