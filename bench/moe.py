"""Benchmark of one MoE layer's experts at DiffusionGemma's shape: the Triton kernels in bf16, fp8
and int4 side by side with transformers' grouped_mm path (torch._grouped_mm) and its eager experts.

    python bench/moe.py                                   # on a CUDA GPU; writes bench/results/moe.{json,md,svg}
    python bench/moe.py --batch-sizes 256 --dtype bf16 --out /tmp/moe

Shape: E=128 experts, top-8, H=2816, I=704, M tokens in {1, 16, 64, 256, 1024, 4096}; random
weights, uniformly random routing, softmax routing weights. Times are medians of Triton's do_bench
(L2 flushed between runs). ms is the experts' time (alignment and both GEMMs) without the router,
whose kernel is timed alone as route_ms. gbps counts the weight bytes of the experts the routing
touches (data and scales), hbm_share divides it by the device's HBM peak (bench/hbm.py; --peak-tbs
to override). grouped_mm_ms and eager_ms are the bf16 baselines at the same M, repeated on each
format's row. The files are written through bench/record.py (command, commit, machine, date).

--device cpu runs a toy shape in the Triton interpreter to check the script itself; its timings
mean nothing and are not results, so it needs --out.
"""
from __future__ import annotations

import argparse
import html
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hbm import peak_tbs  # noqa: E402
from record import RESULTS, provenance, write_results  # noqa: E402

REAL = {"E": 128, "H": 2816, "I": 704, "top_k": 8, "batch_sizes": [1, 16, 64, 256, 1024, 4096]}
TOY = {"E": 8, "H": 64, "I": 32, "top_k": 2, "batch_sizes": [4, 32]}
GOALS_H100_M256 = {"bf16": 0.85, "fp8": 0.75, "int4": 0.60}


def transformers_experts(gate_up, down, top_k: int, implementation: str):
    """transformers' Gemma 4 experts module over our weight tensors, with the given implementation."""
    from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4TextExperts
    E, two_i, H = gate_up.shape
    cfg = Gemma4TextConfig(hidden_size=H, moe_intermediate_size=two_i // 2, num_experts=E, top_k_experts=top_k,
                           hidden_activation="gelu_pytorch_tanh")
    cfg._experts_implementation = implementation
    with torch.device("meta"):
        experts = Gemma4TextExperts(cfg)
    experts.gate_up_proj = torch.nn.Parameter(gate_up, requires_grad=False)
    experts.down_proj = torch.nn.Parameter(down, requires_grad=False)
    return experts


def bench(shape: dict, formats, device: str, peak_gbps, check: bool = True, log=print):
    from diffill.kernels import fused_moe_triton, moe_reference, route_triton
    from diffill.kernels.quant import quantize
    from diffill.kernels.tune import timer as make_timer
    E, H, I, top_k = shape["E"], shape["H"], shape["I"], shape["top_k"]
    dtype = torch.bfloat16
    timer = make_timer(device, warmup=25, rep=100)
    name = fused_moe_triton.device_name(device)
    g = torch.Generator(device=device).manual_seed(0)
    gate_up = (torch.randn(E, 2 * I, H, device=device, generator=g) * H ** -0.5).to(dtype)
    down = (torch.randn(E, H, I, device=device, generator=g) * I ** -0.5).to(dtype)
    weights = {"bf16": (gate_up, down)}
    for fmt in formats:
        if fmt != "bf16":
            weights[fmt] = (quantize(gate_up, fmt), quantize(down, fmt))
    router = (torch.randn(E, H, device=device, generator=g).to(dtype), torch.ones(H, device=device, dtype=dtype),
              torch.ones(E, device=device, dtype=dtype))
    baselines = {impl: transformers_experts(gate_up, down, top_k, impl) for impl in ("grouped_mm", "eager")}

    rows = []
    for M in shape["batch_sizes"]:
        x = torch.randn(M, H, device=device, generator=g).to(dtype)
        topk_ids = torch.rand(M, E, device=device, generator=g).topk(top_k, dim=1).indices.to(torch.int32)
        topk_weights = torch.softmax(torch.randn(M, top_k, device=device, generator=g), dim=1)
        touched = torch.unique(topk_ids).numel()
        route_ms = timer(lambda: route_triton.route(x, *router, top_k, 1e-6))
        base_ms = {impl: timer(lambda m=m: m(x, topk_ids.long(), topk_weights))
                   for impl, m in baselines.items()}
        for fmt in formats:
            gu, dn = weights[fmt]
            if check:
                out = fused_moe_triton.fused_moe(x, gu, dn, topk_weights, topk_ids).float()
                ref = moe_reference.fused_moe(x, gu, dn, topk_weights, topk_ids).float()
                err = ((out - ref).abs().max() / ref.abs().max()).item()
                if err > 3e-2:
                    raise RuntimeError(f"{fmt} M={M}: the kernel disagrees with the reference (relative {err:.3g})")
            ms = timer(lambda: fused_moe_triton.fused_moe(x, gu, dn, topk_weights, topk_ids))
            nbytes = touched * (_expert_bytes(gu) + _expert_bytes(dn))
            gbps = nbytes / ms / 1e6
            row = {"device": name, "dtype": fmt, "M": M, "ms": round(ms, 5), "gbps": round(gbps, 1),
                   "hbm_share": None if peak_gbps is None else round(gbps / peak_gbps, 4),
                   "grouped_mm_ms": round(base_ms["grouped_mm"], 5), "eager_ms": round(base_ms["eager"], 5),
                   "route_ms": round(route_ms, 5), "experts_touched": touched, "weight_bytes": nbytes}
            rows.append(row)
            share = "" if peak_gbps is None else f" = {100 * gbps / peak_gbps:.1f}% of HBM peak"
            log(f"{name} {fmt:>4} M={M:<5} {ms:.4f} ms, {gbps:.0f} GB/s{share}; grouped_mm {base_ms['grouped_mm']:.4f} "
                f"ms ({base_ms['grouped_mm'] / ms:.2f}x), eager {base_ms['eager']:.4f} ms; route {route_ms:.4f} ms")
    return rows


def _expert_bytes(w) -> int:
    if isinstance(w, torch.Tensor):
        return w[0].numel() * w.element_size()
    return w.expert_nbytes()


def goals(rows) -> list[str]:
    """The issue's H100 goals at M=256, met or not."""
    lines = []
    for r in rows:
        if r["M"] == 256 and "H100" in r["device"] and r["hbm_share"] is not None:
            goal = GOALS_H100_M256[r["dtype"]]
            ok = r["hbm_share"] >= goal and r["grouped_mm_ms"] >= 2 * r["ms"]
            lines.append(f"goal {r['dtype']} M=256: {100 * r['hbm_share']:.1f}% of peak (>= {100 * goal:.0f}%), "
                         f"{r['grouped_mm_ms'] / r['ms']:.2f}x grouped_mm (>= 2x): {'met' if ok else 'NOT met'}")
    return lines


def markdown(rows, goal_lines) -> str:
    lines = ["| device | dtype | M | ms | GB/s | share of HBM peak | grouped_mm ms | eager ms | route ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        share = "" if r["hbm_share"] is None else f"{100 * r['hbm_share']:.1f}%"
        lines.append(f"| {r['device']} | {r['dtype']} | {r['M']} | {r['ms']:.4f} | {r['gbps']:.0f} | {share} | "
                     f"{r['grouped_mm_ms']:.4f} | {r['eager_ms']:.4f} | {r['route_ms']:.4f} |")
    return "\n".join(lines + [""] + goal_lines) + "\n"


def svg_plot(rows, path: Path, caption: str):
    """Two panels: ms per layer and share of HBM peak, against M (log axes), one line per series."""
    series = {}
    for r in rows:
        series.setdefault(f"triton {r['dtype']}", {})[r["M"]] = (r["ms"], r["hbm_share"])
    for r in rows:
        series.setdefault("grouped_mm bf16", {})[r["M"]] = (r["grouped_mm_ms"], None)
        series.setdefault("eager bf16", {})[r["M"]] = (r["eager_ms"], None)
    ms_all = sorted({m for s in series.values() for m in s})
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#7f7f7f", "#bcbd22", "#9467bd"]
    W, Hh, pad = 420, 300, 50
    import math

    def panel(x0, title, pick, log_y):
        vals = [v for s in series.values() for m in s if (v := pick(s[m])) is not None and v > 0]
        if not vals:
            return ""
        lo, hi = (math.log10(min(vals)), math.log10(max(vals))) if log_y else (0.0, max(1.0, max(vals)))
        hi = hi if hi > lo else lo + 1

        def xy(i, v):
            fx = i / max(1, len(ms_all) - 1)
            fy = ((math.log10(v) if log_y else v) - lo) / (hi - lo)
            return x0 + pad + fx * (W - 2 * pad), Hh - pad - fy * (Hh - 2 * pad)
        out = [f'<text x="{x0 + W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
               f'<rect x="{x0 + pad}" y="{pad}" width="{W - 2 * pad}" height="{Hh - 2 * pad}" fill="none" stroke="#999"/>']
        for i, m in enumerate(ms_all):
            x, _ = xy(i, 10 ** lo if log_y else lo)
            out.append(f'<text x="{x}" y="{Hh - pad + 15}" text-anchor="middle" font-size="10">{m}</text>')
        for v in (lo, hi):
            y = Hh - pad - (v - lo) / (hi - lo) * (Hh - 2 * pad)
            text = f"{10 ** v:.3g}" if log_y else f"{v:.2f}"
            out.append(f'<text x="{x0 + pad - 4}" y="{y + 4}" text-anchor="end" font-size="10">{text}</text>')
        for c, (label, s) in zip(colors, series.items()):
            pts = [xy(i, pick(s[m])) for i, m in enumerate(ms_all) if m in s and (pick(s[m]) or 0) > 0]
            if pts:
                out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                           + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        out.append(f'<text x="{x0 + W / 2}" y="{Hh - 12}" text-anchor="middle" font-size="11">tokens M</text>')
        return "\n".join(out)

    legend = [f'<text x="{2 * W + 10}" y="{60 + 18 * i}" font-size="12" fill="{c}">{label}</text>'
              for i, (c, label) in enumerate(zip(colors, series))]
    body = [panel(0, "ms per MoE layer (log)", lambda v: v[0], True),
            panel(W, "share of HBM peak", lambda v: v[1], False), *legend]
    body.append(f'<text x="10" y="{Hh + 16}" font-size="10">{html.escape(caption)}</text>')
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W + 160}" height="{Hh + 24}" '
                    f'font-family="sans-serif">\n' + "\n".join(body) + "\n</svg>\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", nargs="+", choices=["bf16", "fp8", "int4"], default=["bf16", "fp8", "int4"])
    p.add_argument("--batch-sizes", nargs="+", type=int)
    p.add_argument("--peak-tbs", type=float, help="HBM peak of this device, TB/s (default: bench/hbm.py by its name)")
    p.add_argument("--device", default="cuda", help="cuda; cpu runs a toy shape in the Triton interpreter")
    p.add_argument("--out", type=Path, help="folder for moe.json, moe.md and moe.svg (default on a GPU: bench/results)")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with the reference")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench/moe.py: no CUDA device; GPU figures need a GPU (--device cpu --out DIR checks the script only)",
              file=sys.stderr)
        return 2
    if args.device == "cpu":
        if args.out is None:
            print("bench/moe.py: --device cpu times the Triton interpreter, not a result: give --out DIR",
                  file=sys.stderr)
            return 2
        os.environ.setdefault("TRITON_INTERPRET", "1")
    shape = dict(REAL if args.device == "cuda" else TOY)
    if args.batch_sizes:
        shape["batch_sizes"] = args.batch_sizes
    from diffill.kernels.fused_moe_triton import device_name
    name = device_name(args.device)
    tbs = args.peak_tbs or peak_tbs(name)
    rows = bench(shape, args.dtype, args.device, None if tbs is None else tbs * 1000, check=not args.no_check)
    goal_lines = goals(rows)
    out = args.out or RESULTS
    data = {"device": name, "peak_tbs": tbs, "shape": {k: v for k, v in shape.items() if k != "batch_sizes"},
            "goals": goal_lines, "rows": rows}
    try:
        import triton
        data["triton"] = triton.__version__
    except ImportError:
        pass
    js, md = write_results("moe", data, markdown(rows, goal_lines),
                           f"One MoE layer's experts on {name} (`bench/moe.py`)", argv, out_dir=out)
    prov = provenance(argv)
    svg_plot(rows, out / "moe.svg", f"{prov['command']} at {prov['commit'][:12]}, {name}, {prov['date']}")
    for line in goal_lines:
        print(line)
    print(f"wrote {js}, {md} and {out / 'moe.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
