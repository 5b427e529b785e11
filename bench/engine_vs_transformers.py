"""One canvas at fixed steps: our engine and transformers' generate() side by side, same random model.

    python bench/engine_vs_transformers.py [--steps 16] [--repeats 3] [--threads 2]
                                           [--dtypes float32,bfloat16] [--clock wall|cpu]

Builds a random DiffusionGemma of about 40M parameters (real layout, 256-token canvas), runs one
canvas of 256 tokens at a fixed number of denoising steps (adaptive stopping off) after a 128-token
prompt in both engines, alternating, in each dtype (like for like), and writes
bench/results/engine_vs_transformers.json and .md through bench/record.py (command, commit, machine,
date). "defaults" compares each engine at its default dtype here (ours: auto, transformers: float32).
Times are medians of --repeats runs of each engine, ratios are taken within this one run.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_results  # noqa: E402

CONFIG = dict(vocab_size=16384, hidden_size=512, intermediate_size=1024, num_hidden_layers=6,
              num_attention_heads=8, num_key_value_heads=2, head_dim=64,
              layer_types=["sliding_attention"] * 5 + ["full_attention"], sliding_window=256,
              per_layer_config={"5": {"head_dim": 128, "num_key_value_heads": 1}},
              num_experts=8, top_k_experts=4, moe_intermediate_size=256)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtypes", default="float32,bfloat16", help="each is run in both engines, like for like")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: this process's CPU time, robust to other load on a shared machine (use with "
                         "--threads 1, where no thread spins waiting for another)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the results (default: bench/results)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import DiffusionGemmaForBlockDiffusion

    from diffill.model import GenerationSettings, build_random_checkpoint, load_model, resolve_dtype
    from diffill.model.engine.checkpoint import cpu_has_native_bf16
    from diffill.model.engine.sampler import sample

    # confidence_threshold 1e-9: the adaptive stop never fires on a random model, both run exactly `steps` steps
    gen = GenerationSettings(max_denoising_steps=args.steps, confidence_threshold=1e-9)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    prompt = torch.randint(5, 16000, (1, 128), generator=torch.Generator().manual_seed(0))
    engines = {}
    with tempfile.TemporaryDirectory() as d:
        path = build_random_checkpoint(d, config_overrides=CONFIG, canvas_length=256, seed=0, generation=gen)
        for dt in dtypes:
            engines[dt] = (load_model(path, dtype=dt),
                           DiffusionGemmaForBlockDiffusion.from_pretrained(path, dtype=dt).eval())
    params = engines[dtypes[0]][0].num_parameters()

    def run_ours(model, seed):
        r = sample(model, model.encode(prompt), max_new_tokens=256, seed=seed)
        assert r.steps == args.steps, r.steps
        return r.tokens[0]

    def run_ref(model, seed):
        torch.manual_seed(seed)
        out = model.generate(prompt, max_new_tokens=256, max_denoising_steps=args.steps, confidence_threshold=1e-9)
        return out.sequences[0, 128:].tolist()

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = {(dt, who): [] for dt in dtypes for who in ("ours", "transformers")}
    same = {}
    with torch.inference_mode():
        for dt, (ours, ref) in engines.items():  # warm-up, and the same seed gives the same tokens
            a, b = run_ours(ours, 0), run_ref(ref, 0)
            same[dt] = a == b[:len(a)]
        for i in range(args.repeats):  # alternate, so that load on the machine hits both alike
            for dt, (ours, ref) in engines.items():
                for who, fn, model in (("ours", run_ours, ours), ("transformers", run_ref, ref)):
                    t0 = clock()
                    fn(model, i + 1)
                    times[(dt, who)].append((clock() - t0) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
    auto = resolve_dtype("auto", "cpu")
    rows = {name[dt]: {"ours_ms": round(med[(dt, "ours")], 1), "transformers_ms": round(med[(dt, "transformers")], 1),
                       "speedup": round(med[(dt, "transformers")] / med[(dt, "ours")], 3),
                       "same_tokens_as_transformers": same[dt],
                       "ours_runs_ms": [round(t) for t in times[(dt, "ours")]],
                       "transformers_runs_ms": [round(t) for t in times[(dt, "transformers")]]}
            for dt in dtypes}
    base = dtypes[0]
    result = {
        "native_bf16": cpu_has_native_bf16(),
        "clock": "process CPU time" if args.clock == "cpu" else "wall time",
        "params": params, "steps": args.steps, "canvas": 256, "prompt_tokens": 128, "repeats": args.repeats,
        # headline: like for like in the first dtype
        "dtype": name[base], "ours_ms": rows[name[base]]["ours_ms"],
        "transformers_ms": rows[name[base]]["transformers_ms"], "speedup": rows[name[base]]["speedup"],
        "by_dtype": rows,
    }
    if auto in dtypes and torch.float32 in dtypes:  # each engine at its default dtype on this machine
        result["defaults"] = {"ours_dtype": name[auto], "transformers_dtype": "float32",
                              "speedup": round(med[(torch.float32, "transformers")] / med[(auto, "ours")], 3)}
    kw = {} if args.out is None else {"out_dir": args.out}
    js, md = write_results("engine_vs_transformers", result, markdown(result),
                           "Engine vs transformers on the CPU (`bench/engine_vs_transformers.py`)", argv, **kw)
    print(md.read_text())
    return result


def markdown(r) -> str:
    lines = [f"One canvas of {r['canvas']} tokens at {r['steps']} fixed denoising steps after a {r['prompt_tokens']}-token "
             f"prompt, on a random DiffusionGemma of {r['params'] / 1e6:.1f}M parameters: our `sample()` against "
             f"transformers' `DiffusionGemmaForBlockDiffusion.generate()`, alternating in one process, "
             f"{r['repeats']} timed runs each after a warm-up; medians of {r['clock']}. Native bf16 on this CPU: "
             f"{r['native_bf16']}.", "",
             "| dtype | ours | transformers | speedup | same tokens as transformers |", "|---|---:|---:|---:|---|"]
    for dt, row in r["by_dtype"].items():
        lines.append(f"| {dt} | {row['ours_ms'] / 1000:.2f} s | {row['transformers_ms'] / 1000:.2f} s | "
                     f"{row['speedup']:.2f}x | {row['same_tokens_as_transformers']} |")
    if "defaults" in r:
        d = r["defaults"]
        lines += ["", f"Each at its default dtype here (ours {d['ours_dtype']}, transformers {d['transformers_dtype']}): "
                      f"{d['speedup']:.2f}x."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
