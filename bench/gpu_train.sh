#!/usr/bin/env bash
# The embedded model's GPU recipe: bench/gpu_train.sh OUTDIR [--rehearse]
#
# For a machine with one H100/H200, torch, triton and transformers installed and no network. Installs
# diffill from this checkout without dependencies, then, each step bounded in time:
#   1. corpus: this machine's standard library and permissively licensed site-packages, deduplicated and
#      decontaminated against the evaluation data ($DIFFILL_EVALDATA when set, else shared/evaldata in
#      the checkout, else ../shared/evaldata); without it the model is trained but not exported;
#   2. pre-tokenization with the embedded model's tokenizer into tensors that go onto the GPU;
#   3. training the "gpu" size for a wall-clock budget (6 minutes), batches made on the GPU;
#   4. export in model/embedded's layout, packed as OUTDIR/embedded-gpu.tar.gz (under 16 MB);
#   5. bench/fim_eval.py through the pipeline on the public sets (a few problems per task, time-limited).
# OUTDIR gets 4 files: gpu_train.log, embedded-gpu.tar.gz, fim_eval_gpu.json, fim_eval_gpu.md.
# Needs tree-sitter and its Python grammar for syntax holes and the evaluation: installed from
# $DIFFILL_WHEELS (a folder of wheels) when missing. Exit status: 0 all done, 3 no archive or no
# evaluation (said why), 1 a step failed.
# The whole run stays under 9 minutes: the training budget shrinks if the steps before it ran late.
# --rehearse: the same steps on the CPU at shrunk sizes (40 standard-library files, the tiny model,
# a 15-second budget), about a minute on 2 cores.
set -uo pipefail

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: bench/gpu_train.sh OUTDIR [--rehearse]" >&2
    exit 2
fi
OUT=$1
REHEARSE=0
[ "${2:-}" = "--rehearse" ] && REHEARSE=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_train.log"
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_train.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)

if [ $REHEARSE = 1 ]; then
    DEADLINE=170; AFTER_TRAIN=70; MINUTES=0.25; WORKERS=1
    CORPUS=(--stdlib-only --max-files 40)
    TRAIN=(--size tiny --device cpu --threads 2 --batch-size 4 --warmup 20 --log-every 10
           --prefix-tokens 64 --suffix-tokens 32 --canvas-lengths 16,32,64 --eval-batches 1)
    EVAL=(--limit 2 --multi-limit 2 --block-fills 2 --time-limit 10 --threads 2)
else
    DEADLINE=530; AFTER_TRAIN=70; MINUTES=6; WORKERS=$(( $(nproc) < 16 ? $(nproc) : 16 ))
    CORPUS=()
    TRAIN=(--size gpu --device cuda --batch-size 256)
    EVAL=(--limit 20 --multi-limit 20 --block-fills 10 --time-limit 10 --threads 8)
fi

# $DIFFILL_EVALDATA, when set, is the only place looked at
EVALDATA=
if [ -n "${DIFFILL_EVALDATA+set}" ]; then places=("$DIFFILL_EVALDATA"); else places=("$ROOT/shared/evaldata" "$ROOT/../shared/evaldata"); fi
for d in "${places[@]}"; do
    [ -z "$EVALDATA" ] && [ -d "$d/humaneval-infilling" ] && EVALDATA=$(cd "$d" && pwd)
done

left() { echo $(( DEADLINE - ($(date +%s) - START) )); }

# step NAME SECONDS COMMAND...: run bounded by min(SECONDS, time left), say how long it took
step() {
    local name=$1 limit=$2; shift 2
    local l; l=$(left)
    [ "$limit" -gt "$l" ] && limit=$l
    if [ "$limit" -le 0 ]; then echo "== $name: no time left, skipped"; return 124; fi
    echo "== $name (at most ${limit} s)"
    local t0; t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc after $(( $(date +%s) - t0 )) s"
    return $rc
}

install() {
    if "$PY" -c "import diffill.model, pathlib, sys; sys.exit(pathlib.Path(diffill.model.__path__[0]).resolve() != pathlib.Path('$ROOT/model').resolve())" 2>/dev/null; then
        echo "diffill is already installed from this checkout"
        return 0
    fi
    timeout 90 "$PY" -m pip install --no-index --no-deps --no-build-isolation -e "$ROOT" && return 0
    # no setuptools/wheel to build with: the import names as links on PYTHONPATH
    echo "pip could not install the checkout; importing it through links instead"
    mkdir -p "$WORK/site/diffill"
    for part in lsp model kernels; do ln -s "$ROOT/$part" "$WORK/site/diffill/$part"; done
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import diffill.model.train.recipe"
}

# tree-sitter (block and node holes; the pipeline fim_eval runs) from $DIFFILL_WHEELS when missing
syntax() {
    "$PY" -c "import tree_sitter, tree_sitter_python" 2>/dev/null && return 0
    if [ -n "${DIFFILL_WHEELS:-}" ]; then
        timeout 60 "$PY" -m pip install --no-index --find-links "$DIFFILL_WHEELS" -q tree-sitter tree-sitter-python
        "$PY" -c "import tree_sitter, tree_sitter_python" 2>/dev/null && return 0
    fi
    echo "tree-sitter is not installed (and no wheels in \$DIFFILL_WHEELS): no block or node holes, and no evaluation"
    return 1
}

main() {
    echo "bench/gpu_train.sh $( [ $REHEARSE = 1 ] && echo '--rehearse ')at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) on $(hostname), $(date -u '+%Y-%m-%d %H:%M UTC')"
    "$PY" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
    if [ -n "$EVALDATA" ]; then echo "evaluation data: $EVALDATA (decontamination and evaluation run)"
    else echo "evaluation data: none found (shared/evaldata, ../shared/evaldata, \$DIFFILL_EVALDATA): the corpus cannot be decontaminated, so the model is trained but NOT exported, and not evaluated"; fi

    echo "== install"
    install || return 1
    local have_syntax=1
    syntax || have_syntax=0
    local recipe=("$PY" -m diffill.model.train.recipe)
    step corpus 150 "${recipe[@]}" corpus --work "$WORK" --workers "$WORKERS" ${EVALDATA:+--evaldata "$EVALDATA"} "${CORPUS[@]}" || return 1
    step pretokenize 120 "${recipe[@]}" pretokenize --work "$WORK" --workers "$WORKERS" || return 1
    # the training budget: what is left once the steps after it have their share
    # (and 25 s for the step's start, the held-out loss and the export)
    local budget; budget=$("$PY" -c "print(round(max(0.05, min($MINUTES, ($(left) - $AFTER_TRAIN - 25) / 60)), 2))")
    echo "training budget: $budget min"
    # the MoE reference in training: the Triton kernels have no backward, and the no-gradient passes
    # (self-conditioning, the held-out loss) would otherwise be their first use, which this script does not test
    DIFFILL_MOE_BACKEND=reference step train $(( $(left) - AFTER_TRAIN + 20 )) "${recipe[@]}" train --work "$WORK" --minutes "$budget" "${TRAIN[@]}" || return 1
    local packed=0
    step pack 30 "${recipe[@]}" pack --work "$WORK" --out "$OUT" && packed=1
    if [ $packed = 1 ] && [ $have_syntax = 1 ]; then
        step evaluate $(( AFTER_TRAIN - 10 )) "$PY" bench/fim_eval.py --model "$WORK/export" --evaldata "$EVALDATA" \
            --name fim_eval_gpu --out-dir "$OUT" "${EVAL[@]}"
    else
        local why="no model was exported (see gpu_train.log)"
        [ $packed = 1 ] && why="tree-sitter is not installed: the pipeline cannot run"
        echo "evaluation skipped: $why"
        "$PY" -c "import json, sys; json.dump({'ran': False, 'reason': sys.argv[2]}, open(sys.argv[1], 'w'))" "$OUT/fim_eval_gpu.json" "$why"
        return 3
    fi
}

main 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
echo "== done: exit $rc after $(( $(date +%s) - START )) s; $OUT holds $(ls "$OUT" | tr '\n' ' ')" | tee -a "$LOG"
exit "$rc"
