"""The engine at DiffusionGemma's real shape on one GPU, random weights, beside transformers.

    .venv/bin/python bench/engine_gpu.py                 # on a CUDA machine: the real 26B-A4B text config
    .venv/bin/python bench/engine_gpu.py --shrink        # anywhere: a tiny config, to exercise the script

For each form (bf16; fp8 experts; int4 experts, via kernels.quant; everything else stays bf16; with
--shrink the unquantised weights are fp32 unless --dtype says otherwise) it builds
the model directly on the device (no file) and measures:
- prefill ms for 1K / 4K / 16K-token prompts (the causal encoder filling the cache);
- denoise step ms: one replay of the captured decoder step (model/static_step.py, logits included)
  over a 4K-token cache, against the HBM floor = bytes of every weight / peak bandwidth (a 256-token
  canvas routes 2,048 tokens to 128 experts: every expert is read each step);
- tokens/s for one 256-token canvas at 8, 16 and 48 steps: 256 / the denoising loop's time
  (model/gpu_sampler.py with the fused head, adaptive stop off so that every step runs), the cache
  and the graph already made; at 16 steps also with the unfused head (logits from the graph) and
  end to end (prefill + graph capture + loop);
- peak GPU memory.
Then transformers' DiffusionGemmaForBlockDiffusion at the same config in bf16: generate() for one
canvas after the same prompt at 16 steps (end to end, its own prefill included).
Writes, through bench/record.py (command, commit, machine, date), bench/results/engine_gpu.json (per
form step_ms / floor_ms / tok_per_s_16 / peak_gb, transformers_tok_per_s_16, and the details),
engine_gpu.md (the same as tables) and engine_gpu.svg (a bar plot). The floor uses the device's
peak from bench/hbm.py (--peak-tbs to override). --shrink figures are not results: they need --out.
"""
import argparse
import gc
import html
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hbm import peak_tbs  # noqa: E402
from record import RESULTS, provenance, write_results  # noqa: E402

# A tiny config of the real layout (5 sliding + 1 full layer, k = v on the full one), for --shrink.
SHRINK_TEXT = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                   layer_types=["sliding_attention"] * 5 + ["full_attention"], sliding_window=32,
                   per_layer_config={"5": {"head_dim": 32, "num_key_value_heads": 1}},
                   num_experts=8, top_k_experts=2, moe_intermediate_size=32)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shrink", action="store_true", help="tiny config (runs on the CPU)")
    ap.add_argument("--forms", default="bf16,fp8,int4")
    ap.add_argument("--prompts", default=None, help="prefill lengths (default 1024,4096,16384; shrunk 32,64,128)")
    ap.add_argument("--context", type=int, default=None, help="prompt length before the canvas (default 4096; shrunk 64)")
    ap.add_argument("--canvas", type=int, default=None, help="canvas length (default 256; shrunk 16)")
    ap.add_argument("--steps", default="8,16,48")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default 10; shrunk 1)")
    ap.add_argument("--chunk", type=int, default=None, help="vocabulary chunk of the fused head (default 16384)")
    ap.add_argument("--dtype", default=None, help="activations and unquantised weights (default bfloat16; "
                    "shrunk float32: bf16 kernels are slow on most CPUs)")
    ap.add_argument("--no-transformers", action="store_true")
    ap.add_argument("--peak-tbs", type=float, default=None,
                    help="peak memory bandwidth, TB/s (default: bench/hbm.py by the device's name)")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for engine_gpu.json, .md and .svg (default on a GPU: bench/results)")
    a = ap.parse_args(argv)
    a.prompts = [int(x) for x in (a.prompts or ("32,64,128" if a.shrink else "1024,4096,16384")).split(",")]
    a.context = a.context or (64 if a.shrink else 4096)
    a.canvas = a.canvas or (16 if a.shrink else 256)
    a.steps = [int(x) for x in a.steps.split(",")]
    a.repeats = a.repeats or (1 if a.shrink else 10)
    a.chunk = a.chunk or (128 if a.shrink else 16384)
    a.forms = a.forms.split(",")
    a.dtype = getattr(torch, a.dtype or ("float32" if a.shrink else "bfloat16"))
    return a


class Clock:
    """Milliseconds of a callable, synchronising the GPU around it."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def ms(self, fn, repeats=1):
        times = []
        for _ in range(repeats):
            if self.cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if self.cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        return times[len(times) // 2]


def build(text: dict, canvas: int, device, dtype, form: str):
    """Our model in one form, built on the device in `dtype` (never materialised in fp32)."""
    from diffill.model.engine.builder import random_model
    return random_model(text, device, dtype, None if form == "bf16" else form, canvas_length=canvas)


def weight_bytes(model) -> int:
    """Bytes of every weight a denoising step reads (parameters, quantised experts included)."""
    from diffill.kernels.quant import QuantWeight
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    for layer in model.layers:
        for w in (layer.experts.gate_up_proj, layer.experts.down_proj):
            if isinstance(w, QuantWeight):
                n += w.nbytes
    return n


def peak_bandwidth(device, override_tbs):
    """Bytes per second, or None for a device without a known peak."""
    tbs = override_tbs or (peak_tbs(torch.cuda.get_device_name(device)) if device.type == "cuda" else None)
    return None if tbs is None else tbs * 1e12


def measure_form(args, text, device, dtype, form, clock, bandwidth):
    from diffill.model.engine.config import GenerationSettings
    from diffill.model.gpu.gpu_sampler import denoise_canvas
    from diffill.model.gpu.static_step import StaticDenoiser
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = build(text, args.canvas, device, dtype, form)
    v = model.config.vocab_size
    gen = torch.Generator(device=device).manual_seed(0)
    row = {"weight_bytes": weight_bytes(model), "weight_gb": round(weight_bytes(model) / 1e9, 3)}
    with torch.inference_mode():
        prefill = {}
        for t in args.prompts:
            ids = torch.randint(5, v, (1, t), device=device, generator=gen)
            model.encode(ids)  # warm-up (Triton kernels compile per shape bucket)
            prefill[str(t)] = round(clock.ms(lambda: model.encode(ids), args.repeats), 3)
        row["prefill_ms"] = prefill
        prompt = torch.randint(5, v, (1, args.context), device=device, generator=gen)
        cache = model.encode(prompt)
        t0 = time.perf_counter()
        step = StaticDenoiser(model, cache, args.canvas, with_logits=True)
        row["graph_captured"] = step.graph is not None
        row["capture_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        step.canvas.random_(0, v, generator=gen)
        row["step_ms"] = round(clock.ms(step.run, max(args.repeats, 3) * 3), 3)
        row["floor_ms"] = None if bandwidth is None else round(weight_bytes(model) / bandwidth * 1000, 3)
        fixed = GenerationSettings(confidence_threshold=0.0)  # the adaptive stop never fires: every step runs

        def unfused():  # [B, C, V] fp32 logits from the graph, sampled by multinomial as the reference does
            denoise_canvas(model, step, fixed, 16, gen, check_every=16)

        unfused()
        row["tok_per_s_16_unfused_head"] = round(args.canvas / (clock.ms(unfused, args.repeats) / 1000), 1)
        del step
        fused = StaticDenoiser(model, cache, args.canvas, with_logits=False)

        def canvas(n):
            return denoise_canvas(model, fused, fixed, n, gen, check_every=n, fused=True, draw="gumbel",
                                  chunk=args.chunk)

        for n in args.steps:
            canvas(n)  # warm-up
            row[f"tok_per_s_{n}"] = round(args.canvas / (clock.ms(lambda: canvas(n), args.repeats) / 1000), 1)
        del fused

        def end_to_end():
            c = model.encode(prompt)
            s = StaticDenoiser(model, c, args.canvas, with_logits=False)
            denoise_canvas(model, s, fixed, 16, gen, check_every=16, fused=True, draw="gumbel", chunk=args.chunk)

        row["tok_per_s_16_end_to_end"] = round(args.canvas / (clock.ms(end_to_end, max(1, args.repeats // 3)) / 1000), 1)
    row["peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2) if device.type == "cuda" else None
    del model, cache
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def measure_transformers(args, text, device, dtype, clock):
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    from diffill.model.engine.builder import make_config
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    config = DiffusionGemmaConfig.from_dict(make_config(text, canvas_length=args.canvas))
    with torch.device(device):
        model = DiffusionGemmaForBlockDiffusion._from_config(config, dtype=dtype).eval()
    prompt = torch.randint(5, text["vocab_size"], (1, args.context), device=device)

    def run():
        model.generate(prompt, max_new_tokens=args.canvas, max_denoising_steps=16, confidence_threshold=1e-9)

    with torch.inference_mode():
        run()  # warm-up
        ms = clock.ms(run, max(1, args.repeats // 3))
    row = {"tok_per_s_16": round(args.canvas / (ms / 1000), 1), "canvas_16_ms": round(ms, 2),
           "peak_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 2) if device.type == "cuda" else None}
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def markdown(result) -> str:
    forms = [f for f in ("bf16", "fp8", "int4") if f in result]
    steps = result["steps"]
    lines = [f"{'Shrunk config (a check of the script, not a result). ' if result['shrink'] else ''}"
             f"{result['device']}, {result['dtype']}, canvas {result['canvas']} after {result['context_tokens']} "
             f"prompt tokens; peak bandwidth {result['peak_bandwidth_tbs']} TB/s.", "",
             "| form | weights GB | step ms | floor ms | " + " | ".join(f"tok/s @{n}" for n in steps)
             + " | tok/s @16 unfused head | tok/s @16 end to end | graph captured | peak GB |",
             "|---|---:|---:|---:|" + "---:|" * len(steps) + "---:|---:|---|---:|"]
    for f in forms:
        r = result[f]
        lines.append(f"| {f} | {r['weight_gb']} | {r['step_ms']} | {r['floor_ms']} | "
                     + " | ".join(str(r[f"tok_per_s_{n}"]) for n in steps)
                     + f" | {r['tok_per_s_16_unfused_head']} | {r['tok_per_s_16_end_to_end']} | "
                     f"{r['graph_captured']} | {r['peak_gb']} |")
    lines += ["", "Prefill ms by prompt length:", "",
              "| form | " + " | ".join(result[forms[0]]["prefill_ms"]) + " |" if forms else "",
              "|---|" + "---:|" * (len(result[forms[0]]["prefill_ms"]) if forms else 0)]
    for f in forms:
        lines.append(f"| {f} | " + " | ".join(str(v) for v in result[f]["prefill_ms"].values()) + " |")
    if result.get("transformers"):
        t = result["transformers"]
        lines += ["", f"transformers' generate(), one canvas at 16 steps, end to end: {t['tok_per_s_16']} tok/s "
                      f"({t['canvas_16_ms']} ms, peak {t['peak_gb']} GB)."]
    return "\n".join(lines) + "\n"


def write_svg(result, path: Path, caption: str):
    """Bars: step ms against the floor per form, and tok/s at 16 steps beside transformers'."""
    forms = [f for f in ("bf16", "fp8", "int4") if f in result]
    bars = []
    for f in forms:
        bars.append((f"{f} step ms", result[f]["step_ms"], "#4878d0"))
        if result[f]["floor_ms"] is not None:
            bars.append((f"{f} floor ms", result[f]["floor_ms"], "#a0a0a0"))
    speed = [(f"{f} tok/s@16", result[f]["tok_per_s_16"], "#6acc64") for f in forms]
    if result.get("transformers_tok_per_s_16") is not None:
        speed.append(("transformers tok/s@16", result["transformers_tok_per_s_16"], "#d65f5f"))
    rows = []
    y = 40
    for group in (bars, speed):
        top = max([b[1] for b in group] + [1e-9])
        for label, val, color in group:
            w = 380 * val / top
            rows.append(f'<text x="10" y="{y + 13}" font-size="12">{label}</text>'
                        f'<rect x="180" y="{y}" width="{w:.1f}" height="16" fill="{color}"/>'
                        f'<text x="{185 + w:.1f}" y="{y + 13}" font-size="12">{val}</text>')
            y += 22
        y += 14
    title = f'{result["device"]}{" (shrunk config)" if result["shrink"] else ""}'
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="{y + 24}" font-family="sans-serif">'
                    f'<text x="10" y="22" font-size="14">{html.escape(title)}</text>{"".join(rows)}'
                    f'<text x="10" y="{y + 10}" font-size="10">{html.escape(caption)}</text></svg>\n')


def main(argv=None):
    args = parse_args(argv)
    cuda = torch.cuda.is_available() and not args.shrink
    if not cuda and not args.shrink:
        sys.exit("no CUDA device: the real 26B-A4B shapes need a GPU (about 52 GB in bf16); "
                 "run with --shrink --out DIR to exercise the script on the CPU")
    if args.shrink and args.out is None:
        sys.exit("--shrink figures check the script and are not results: give --out DIR")
    device = torch.device("cuda" if cuda else "cpu")
    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(1)  # shrunk shapes: one thread, no spinning against other load on the machine
    try:
        result = run(args, device, cuda)
    finally:
        torch.set_num_threads(threads)
    out = args.out or RESULTS
    js, md = write_results("engine_gpu", result, markdown(result),
                           f"The engine at {'a shrunk' if args.shrink else 'the real 26B-A4B'} shape on "
                           f"{result['device']} (`bench/engine_gpu.py`)", argv, out_dir=out)
    prov = provenance(argv)
    write_svg(result, out / "engine_gpu.svg", f"{prov['command']} at {prov['commit'][:12]}, {prov['date']}")
    print(f"wrote {js}, {md} and {out / 'engine_gpu.svg'}")
    return result


def run(args, device, cuda):
    from diffill.model.engine.builder import REAL_TEXT
    dtype = args.dtype
    text = dict(SHRINK_TEXT if args.shrink else REAL_TEXT)
    clock = Clock(device)
    bandwidth = peak_bandwidth(device, args.peak_tbs)
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    result = {"device": name, "shrink": args.shrink,
              "dtype": str(dtype).removeprefix("torch."), "canvas": args.canvas, "context_tokens": args.context,
              "steps": args.steps,
              "peak_bandwidth_tbs": None if bandwidth is None else bandwidth / 1e12}
    for form in args.forms:
        result[form] = measure_form(args, text, device, dtype, form, clock, bandwidth)
        print(form, json.dumps(result[form]), flush=True)
    result["transformers_tok_per_s_16"] = None
    if not args.no_transformers:
        result["transformers"] = measure_transformers(args, text, device, dtype, clock)
        result["transformers_tok_per_s_16"] = result["transformers"]["tok_per_s_16"]
        print("transformers", json.dumps(result["transformers"]), flush=True)
    return result


if __name__ == "__main__":
    main()
