#!/usr/bin/env bash
# The GPU check in one command (see benchmarks/gpu_check.py for its stages and files).
#
#   bash benchmarks/gpu_check.sh                                         # on a GPU: results/published/gpu/ + gpu.md
#   bash benchmarks/gpu_check.sh --device cpu --quick --out /tmp/gpu-dry  # a CPU dry run, a few minutes
#
# Environment: PYTHON (default: .venv/bin/python, else python3), GANBENCH_DATA (default: the first of
# shared/datasets and ../shared/datasets that exists), GPU_CHECK_HARD_LIMIT (seconds, default 590: the
# script's own deadline, --deadline-s, is 540 on a GPU; this is the net under it), and OUT: where a device
# machine collects files; when set, the outputs are also packed there as gpu-check.tar.gz with gpu.md.
# GPU_CHECK_COMMIT: the commit to record where the tree travels without .git (a device machine).
set -u
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ -z "${GANBENCH_DATA:-}" ]; then
    for d in shared/datasets ../shared/datasets; do
        if [ -d "$d" ]; then export GANBENCH_DATA="$(cd "$d" && pwd)"; break; fi
    done
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# Python packages the machine lacks (torch-fidelity on the H200 image), carried as wheels in .whl/
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ganbench-site .whl/*.whl \
        && export PYTHONPATH="/tmp/ganbench-site:$PYTHONPATH"
fi
export GANBENCH_DISABLE_PLUGIN_AUTOLOAD="${GANBENCH_DISABLE_PLUGIN_AUTOLOAD:-1}"

out=results/published/gpu
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --out) out="${args[$((i + 1))]}" ;;
        --out=*) out="${args[$i]#--out=}" ;;
    esac
done

echo "gpu_check: $PYTHON, GANBENCH_DATA=${GANBENCH_DATA:-unset}, out=$out"
timeout --signal=TERM --kill-after=15 "${GPU_CHECK_HARD_LIMIT:-590}" "$PYTHON" benchmarks/gpu_check.py "$@"
rc=$?

if [ -n "${OUT:-}" ] && [ -d "${OUT}" ] && [ -d "$out" ]; then
    # no checkpoints (hundreds of MB per paper-64 run) and no locks: what publish_records.sh keeps. The runs'
    # sample grids go in a second file, seed 0's only, and dcgan's alone where those pass 15 MiB: a device
    # returns no file over 16 MiB, and the records and figures must not be lost with the pictures.
    tar -czf "$OUT/gpu-check.tar.gz" --exclude=checkpoint.pt --exclude=.lock --exclude=samples \
        -C "$(dirname "$out")" "$(basename "$out")" $( [ -f "$out.md" ] && echo "$(basename "$out").md" ) 2>/dev/null
    for pattern in "*/seed-0/samples" "*/dcgan/seed-0/samples"; do
        (cd "$(dirname "$out")" && find "$(basename "$out")/records" -path "$pattern" -type d 2>/dev/null \
            | tar -cf "$OUT/gpu-samples.tar" -T - 2>/dev/null)
        [ "$(stat -c %s "$OUT/gpu-samples.tar" 2>/dev/null || echo 0)" -le $((15 * 1024 * 1024)) ] && break
        rm -f "$OUT/gpu-samples.tar"
    done
    [ -f "$out.md" ] && cp "$out.md" "$OUT/"
    [ -f "$out/check.json" ] && cp "$out/check.json" "$OUT/"
fi
exit $rc
