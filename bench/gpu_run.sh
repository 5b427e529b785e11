#!/usr/bin/env bash
# One prepared GPU run: bench/gpu_run.sh OUTDIR [--rehearse]
#
# For a machine with one CUDA GPU, torch, triton and transformers installed, and no network. It
# installs diffill from this checkout without dependencies, then runs, in this order, each step
# bounded in time (a step that fails or runs out of time is recorded and the next one runs):
#   1. the GPU test tier (tests marked gpu; needs pytest: from $DIFFILL_WHEELS when not installed);
#   2. bench/gpu_fill.py: fills through a real worker on a random model of the real 26B-A4B shape built
#      on the device, in bf16 (fast path, then reference path), fp8 and int4 experts, with the
#      self-test's verdict per fast part;
#   3. bench/moe.py;  4. a bounded kernel tuning pass (kernels/tune.py, the quick space) that writes
#      measured config tables;  5. bench/engine_gpu.py.
# OUTDIR gets at most 5 files, each well under 16 MB: gpu_run.log (every step's output and time),
# gpu_tests.txt, results.tar (the benchmarks' json/md/svg, each written by its script with command,
# commit, machine and date: unpack into bench/results/), kernel_configs.tar (unpack into
# kernels/configs/) and summary.json (each step's exit code and seconds). Under 8 minutes on an
# H100 or H200. --rehearse runs the same steps on the CPU at shrunk shapes (CI runs it).
set -uo pipefail
usage() { echo "usage: bench/gpu_run.sh OUTDIR [--rehearse]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out="$1"; shift
rehearse=0
for a in "$@"; do case "$a" in --rehearse) rehearse=1 ;; *) usage ;; esac; done
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/results" "$work/configs"
log="$out/gpu_run.log"
: > "$log"
summary="$work/summary.tsv"
: > "$summary"
started=$(date +%s)

step() {  # step NAME SECONDS COMMAND...: run bounded, log output and time, never stop the run
    local name="$1" limit="$2"; shift 2
    local t0=$(date +%s)
    echo "== $name (limit ${limit}s): $*" >> "$log"
    timeout --kill-after=2 "$limit" "$@" >> "$log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    echo "== $name: exit $rc after ${dt}s" >> "$log"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$dt" "$limit" >> "$summary"
    echo "gpu_run: $name: exit $rc after ${dt}s" >&2
}

echo "gpu_run: $(date -u +%FT%TZ) rehearse=$rehearse commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)" >> "$log"
"$PY" - >> "$log" 2>&1 <<'PYEOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
try:
    import triton; print("triton", triton.__version__)
except Exception as exc:
    print("triton missing:", exc)
PYEOF

# 0. diffill from this checkout, without dependencies (nothing is fetched). The rehearsal builds the
#    wheel only: its environment has diffill installed already, and other jobs may be using it.
if [ "$rehearse" = 1 ]; then
    step install 180 "$PY" -m pip wheel --no-deps --no-build-isolation --no-index -q -w "$work/wheel" .
else
    step install 45 "$PY" -m pip install --no-deps --no-build-isolation --no-index -q -e .
fi
if ! "$PY" -c "import diffill.lsp.cli, diffill.model, diffill.kernels" 2>>"$log"; then
    # an old setuptools without editable installs: the three folders under one import name by hand
    mkdir -p "$work/shim/diffill"
    for d in lsp model kernels; do ln -s "$root/$d" "$work/shim/diffill/$d"; done
    export PYTHONPATH="$work/shim${PYTHONPATH:+:$PYTHONPATH}"
    echo "gpu_run: diffill imported from a folder of links ($work/shim)" >> "$log"
fi
if ! "$PY" -c "import pytest" 2>/dev/null && [ -n "${DIFFILL_WHEELS:-}" ]; then
    step install-pytest 30 "$PY" -m pip install --no-index --find-links "$DIFFILL_WHEELS" -q pytest
fi

gpu_tests="tests/test_engine_gpu.py tests/test_kernels_gpu.py tests/test_memory_estimate.py"
if [ "$rehearse" = 1 ]; then
    step gpu-tests 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider $gpu_tests
    step gpu-fill 240 "$PY" bench/gpu_fill.py --preset tiny --fast-path on --fills 30 --steps 4 \
        --run-timeout 90 --out "$work/results"
    step moe 240 "$PY" bench/moe.py --device cpu --out "$work/results"
    step tune 240 env DIFFILL_MOE_CONFIG_DIR="$work/configs" "$PY" -m diffill.kernels.tune --device cpu \
        --space toy --dtype bf16 --batch-sizes 4 --experts 8 --hidden 64 --intermediate 32 --top-k 2 \
        --out "$work/configs"
    step engine-gpu 240 "$PY" bench/engine_gpu.py --shrink --prompts 16 --context 24 --canvas 8 --steps 16 \
        --peak-tbs 0.05 --out "$work/results"
else
    # the limits (and their 2 s kill grace) add up to under 8 minutes with the install steps
    step gpu-tests 75 "$PY" -m pytest -q -m gpu -p no:cacheprovider -x $gpu_tests
    step gpu-fill 170 "$PY" bench/gpu_fill.py --preset real --fills 30 --steps 16 --run-timeout 40 \
        --out "$work/results"
    step moe 40 "$PY" bench/moe.py --out "$work/results"
    step tune 40 env DIFFILL_MOE_CONFIG_DIR="$work/configs" "$PY" -m diffill.kernels.tune --space quick \
        --batch-sizes 16 256 1024 --out "$work/configs"
    step engine-gpu 60 "$PY" bench/engine_gpu.py --repeats 5 --steps 16 --prompts 1024,4096 \
        --out "$work/results"
fi

sed -n '/^== gpu-tests (/,/^== gpu-tests: exit/p' "$log" > "$out/gpu_tests.txt"
tar -C "$work/results" -cf "$out/results.tar" .
tar -C "$work/configs" -cf "$out/kernel_configs.tar" .
"$PY" - "$summary" "$out/summary.json" "$started" "$rehearse" <<'PYEOF'
import json, sys, time
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
steps = [{"step": n, "exit": int(rc), "seconds": int(s), "limit": int(lim)} for n, rc, s, lim in rows]
json.dump({"rehearse": sys.argv[4] == "1", "seconds": int(time.time()) - int(sys.argv[3]), "steps": steps,
           "ok": all(s["exit"] == 0 for s in steps)}, open(sys.argv[2], "w"), indent=1)
PYEOF
echo "gpu_run: done in $(( $(date +%s) - started ))s; files in $out" >&2
