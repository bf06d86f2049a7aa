#!/usr/bin/env bash
# Publish the decisive study's finished runs and re-render everything made from them:
#   bash benchmarks/render_study.sh
# records (no checkpoints) -> results/published/records/study/, the report as md, html and csv
# (results/published/study.*), the seeds plan (study-plan.json) and, where README.md has the marked section
# <!-- verdicts: study results/published/records M --> ... <!-- /verdicts -->, the README's verdict table. All are
# corrected across the design's M primary comparisons (those not yet run count as never significant), not
# just the ones run so far.
set -euo pipefail
bash benchmarks/publish_records.sh study
out=results/published
m=$(python -c "import importlib.util as u; s = u.spec_from_file_location('b', 'benchmarks/choose_budget.py'); \
b = u.module_from_spec(s); s.loader.exec_module(b); print(b.study_comparisons())")
for f in md html csv; do
  ganbench report --results $out/records --protocol study --comparisons "$m" --format $f --out $out/study.$f
done
ganbench plan $out/records --protocol study --comparisons "$m" --format json > $out/study-plan.json.tmp
mv $out/study-plan.json.tmp $out/study-plan.json
if grep -q '<!-- verdicts: study results/published/records[ 0-9]*-->' README.md; then
  python benchmarks/readme_verdicts.py $out/records --protocol study --comparisons "$m" --write README.md
fi
