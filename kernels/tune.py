"""Tune the grouped expert GEMMs on this GPU and write the config table the launcher reads.

    python -m diffill.kernels.tune                       # bf16, fp8, int4 at DiffusionGemma's shape
    python -m diffill.kernels.tune --dtype fp8 --batch-sizes 256 --space quick

For each weight format and token count M, with random weights and uniformly random top-k
routing, every BLOCK_M of the space is tried; for each, GEMM 1 and GEMM 2 are timed separately
over their own (BLOCK_N, BLOCK_K, num_warps, num_stages) grid, and the BLOCK_M with the smallest
sum of the two best times wins. Configs that do not compile or run (shared memory) are skipped.
The table is written to kernels/configs/E=..,H=..,I=..,device=..,dtype=...json (or into
$DIFFILL_MOE_CONFIG_DIR, where the launcher then reads it) with a "_meta" entry
(device, date, versions, command). Runs on CUDA; on a CPU it can only exercise itself in the
Triton interpreter at toy shapes (--device cpu), where the timings mean nothing.
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

BATCH_SIZES = (1, 16, 64, 256, 1024, 4096)
SPACES = {
    # block sizes for the whole (M, format) grid; GEMM grids are (BLOCK_N, BLOCK_K, num_warps, num_stages)
    "full": {"BLOCK_M": (16, 32, 64, 128), "BLOCK_N": (32, 64, 128, 256), "BLOCK_K": (64, 128, 256),
             "num_warps": (4, 8), "num_stages": (2, 3, 4, 5)},
    "quick": {"BLOCK_M": (16, 32, 64), "BLOCK_N": (64, 128), "BLOCK_K": (64, 128),
              "num_warps": (4,), "num_stages": (3, 4)},
    "toy": {"BLOCK_M": (16, 32), "BLOCK_N": (32, 64), "BLOCK_K": (32, 64), "num_warps": (4,), "num_stages": (2,)},
}


def gemm_candidates(space: dict, fmt: str, n: int, k: int):
    """(BLOCK_N, BLOCK_K, warps, stages) worth trying: int4 needs BK <= 128 (one scale group);
    blocks much wider than the matrix are skipped."""
    for bn, bk, warps, stages in itertools.product(space["BLOCK_N"], space["BLOCK_K"], space["num_warps"],
                                                   space["num_stages"]):
        if fmt == "int4" and bk > 128:
            continue
        if bn > 2 * n or bk > 2 * k:
            continue
        yield {"BLOCK_N": bn, "BLOCK_K": bk, "num_warps": warps, "num_stages": stages}


def block_m_candidates(space: dict, M: int, top_k: int, E: int):
    """BLOCK_M values worth trying: no bigger than twice the mean tokens per expert (but at least 16)."""
    mean = M * top_k / E
    return [bm for bm in space["BLOCK_M"] if bm == min(space["BLOCK_M"]) or bm <= 2 * mean]


def random_problem(M, E, H, I, top_k, fmt, device, dtype=torch.bfloat16, seed=0):
    """x, gate_up, down, topk_weights, topk_ids with random weights and uniformly random routing."""
    from .quant import quantize
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(M, H, device=device, generator=g).to(dtype)
    gate_up = (torch.randn(E, 2 * I, H, device=device, generator=g) * H ** -0.5).to(dtype)
    down = (torch.randn(E, H, I, device=device, generator=g) * I ** -0.5).to(dtype)
    if fmt != "bf16":
        gate_up, down = quantize(gate_up, fmt), quantize(down, fmt)
    topk_ids = torch.rand(M, E, device=device, generator=g).topk(top_k, dim=1).indices.to(torch.int32)
    topk_weights = torch.softmax(torch.randn(M, top_k, device=device, generator=g), dim=1)
    return x, gate_up, down, topk_weights, topk_ids


def timer(device: str, warmup: int = 10, rep: int = 50):
    """fn -> median milliseconds: Triton's do_bench on CUDA (L2 flushed between runs; warmup and rep
    in ms), wall clock elsewhere."""
    if device == "cuda":
        import triton.testing
        return lambda fn: triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")

    def wall(fn, reps=2):
        fn()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        return sorted(times)[len(times) // 2]
    return wall


def tune_one(M, E, H, I, top_k, fmt, space, device, log=print):
    """The best config for one (M, format) and its time in ms."""
    from . import fused_moe_triton as fm
    from .align import align
    measure = timer(device)
    x, gate_up, down, topk_weights, topk_ids = random_problem(M, E, H, I, top_k, fmt, device)
    best = None
    for bm in block_m_candidates(space, M, top_k, E):
        routing = align(topk_ids, E, bm)
        t_align = measure(lambda: align(topk_ids, E, bm))
        inter = None
        best1 = best2 = (float("inf"), None)
        for cfg in gemm_candidates(space, fmt, I, H):
            config = {"BLOCK_M": bm, "gemm1": cfg}
            try:
                t = measure(lambda: fm.gemm1(x, gate_up, routing, top_k, config))
            except Exception as exc:                      # out of shared memory or registers: skip
                log(f"  skip gemm1 BM={bm} {cfg}: {type(exc).__name__}")
                continue
            if t < best1[0]:
                best1 = (t, cfg)
        if best1[1] is None:
            continue
        inter = fm.gemm1(x, gate_up, routing, top_k, {"BLOCK_M": bm, "gemm1": best1[1]})
        for cfg in gemm_candidates(space, fmt, H, I):
            config = {"BLOCK_M": bm, "gemm2": cfg}
            try:
                t = measure(lambda: fm.gemm2(inter, down, topk_weights, routing, M, top_k, config))
            except Exception as exc:
                log(f"  skip gemm2 BM={bm} {cfg}: {type(exc).__name__}")
                continue
            if t < best2[0]:
                best2 = (t, cfg)
        if best2[1] is None:
            continue
        total = t_align + best1[0] + best2[0]
        log(f"  M={M} {fmt} BLOCK_M={bm}: align {t_align:.4f} + gemm1 {best1[0]:.4f} + gemm2 {best2[0]:.4f} "
            f"= {total:.4f} ms")
        if best is None or total < best[0]:
            best = (total, {"BLOCK_M": bm, "gemm1": best1[1], "gemm2": best2[1]})
    if best is None:
        raise RuntimeError(f"no config of the space ran for M={M}, {fmt}")
    return best[1], best[0]


def check(config, M, E, H, I, top_k, fmt, device):
    """The chosen config's output against the reference; raises when it is wrong."""
    from . import fused_moe_triton as fm
    from . import moe_reference
    x, gate_up, down, topk_weights, topk_ids = random_problem(min(M, 64), E, H, I, top_k, fmt, device, seed=1)
    out = fm.fused_moe(x, gate_up, down, topk_weights, topk_ids, config=config).float()
    ref = moe_reference.fused_moe(x.float(), _dense(gate_up), _dense(down), topk_weights, topk_ids)
    err = (out - ref).abs().max().item() / ref.abs().max().item()
    if err > 3e-2:
        raise RuntimeError(f"config {config} for M={M}, {fmt} is wrong: relative error {err:.3g}")


def _dense(w):
    return w.float() if isinstance(w, torch.Tensor) else w.dequantize().float()


def tune(formats, batch_sizes, E, H, I, top_k, space_name, device, out_dir, log=print):
    """Tune and write one table per format; returns the written paths."""
    from .fused_moe_triton import config_file_name, device_name
    name = device_name(device)
    space = SPACES[space_name]
    written = []
    for fmt in formats:
        table = {}
        for M in batch_sizes:
            config, ms = tune_one(M, E, H, I, top_k, fmt, space, device, log)
            check(config, M, E, H, I, top_k, fmt, device)
            table[str(M)] = config
            log(f"{name} {fmt} M={M}: {ms:.4f} ms with {config}")
        table["_meta"] = {
            "device": name, "date": datetime.date.today().isoformat(),
            "torch": torch.__version__, "triton": _triton_version(), "python": platform.python_version(),
            "space": space_name, "routing": "uniform random top-k",
            "command": "python -m diffill.kernels.tune " + " ".join(sys.argv[1:]),
        }
        path = Path(out_dir) / config_file_name(E, H, I, name, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table, indent=1) + "\n")
        written.append(path)
        log(f"wrote {path}")
    return written


def _triton_version():
    import triton
    return triton.__version__


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffill.kernels.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", nargs="+", choices=["bf16", "fp8", "int4"], default=["bf16", "fp8", "int4"],
                   help="weight formats to tune")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=list(BATCH_SIZES), help="token counts M")
    p.add_argument("--experts", type=int, default=128)
    p.add_argument("--hidden", type=int, default=2816)
    p.add_argument("--intermediate", type=int, default=704)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--space", choices=sorted(SPACES), default="full")
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a toy run in the Triton interpreter")
    p.add_argument("--out", default=None, help="folder for the JSON tables (default: where the launcher reads them)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("tune: no CUDA device; tuning needs the GPU it tunes for (or --device cpu for a toy run)",
              file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from .fused_moe_triton import CONFIG_DIR
    tune(args.dtype, args.batch_sizes, args.experts, args.hidden, args.intermediate, args.top_k, args.space,
         args.device, args.out or os.environ.get("DIFFILL_MOE_CONFIG_DIR", CONFIG_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
