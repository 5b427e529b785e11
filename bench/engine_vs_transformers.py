"""One canvas at fixed steps: our engine and transformers' generate() side by side, same random model.

    .venv/bin/python bench/engine_vs_transformers.py [--steps 16] [--repeats 3] [--threads 2]

Builds a random DiffusionGemma of about 40M parameters (real layout, 256-token canvas), runs one
canvas of 256 tokens at a fixed number of denoising steps (adaptive stopping off) after a 128-token
prompt in both engines, alternating, and writes bench/results/engine_vs_transformers.json.
"""
import argparse
import datetime
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

CONFIG = dict(vocab_size=16384, hidden_size=512, intermediate_size=1024, num_hidden_layers=6,
              num_attention_heads=8, num_key_value_heads=2, head_dim=64,
              layer_types=["sliding_attention"] * 5 + ["full_attention"], sliding_window=256,
              per_layer_config={"5": {"head_dim": 128, "num_key_value_heads": 1}},
              num_experts=8, top_k_experts=4, moe_intermediate_size=256)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine_vs_transformers.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import DiffusionGemmaForBlockDiffusion

    from diffill.model import GenerationSettings, build_random_checkpoint, load_model
    from diffill.model.sampler import sample

    # confidence_threshold 1e-9: the adaptive stop never fires on a random model, both run exactly `steps` steps
    gen = GenerationSettings(max_denoising_steps=args.steps, confidence_threshold=1e-9)
    with tempfile.TemporaryDirectory() as d:
        path = build_random_checkpoint(d, config_overrides=CONFIG, canvas_length=256, seed=0, generation=gen)
        ours = load_model(path)
        ref = DiffusionGemmaForBlockDiffusion.from_pretrained(path, dtype=torch.float32).eval()
    params = ours.num_parameters()
    prompt = torch.randint(5, 16000, (1, 128), generator=torch.Generator().manual_seed(0))

    def run_ours(seed):
        r = sample(ours, ours.encode(prompt), max_new_tokens=256, seed=seed)
        assert r.steps == args.steps, r.steps
        return r.tokens[0]

    def run_ref(seed):
        torch.manual_seed(seed)
        out = ref.generate(prompt, max_new_tokens=256, max_denoising_steps=args.steps, confidence_threshold=1e-9)
        return out.sequences[0, 128:].tolist()

    with torch.inference_mode():
        same = run_ours(0) == [t for t in run_ref(0) if t not in (0,)][:len(run_ours(0))]  # warm-up + parity
        times = {"ours": [], "transformers": []}
        for i in range(args.repeats):
            for name, fn in (("ours", run_ours), ("transformers", run_ref)):
                t0 = time.perf_counter()
                fn(i + 1)
                times[name].append((time.perf_counter() - t0) * 1000)
    ours_ms = statistics.median(times["ours"])
    ref_ms = statistics.median(times["transformers"])
    row = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
        "date": datetime.date.today().isoformat(),
        "command": "python bench/engine_vs_transformers.py " + f"--steps {args.steps} --repeats {args.repeats} --threads {args.threads}",
        "params": params, "steps": args.steps, "canvas": 256, "prompt_tokens": 128,
        "ours_ms": round(ours_ms, 1), "transformers_ms": round(ref_ms, 1),
        "speedup": round(ref_ms / ours_ms, 3),
        "ours_runs_ms": [round(t, 1) for t in times["ours"]],
        "transformers_runs_ms": [round(t, 1) for t in times["transformers"]],
        "same_tokens_as_transformers": same,
    }
    Path(args.out).write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
