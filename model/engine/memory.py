"""How much device memory a fill needs, from a ModelConfig alone (no weights read), and which form
of the expert weights fits a device.

The estimate has five parts:
- weights, per group (embedding/head, attention, dense MLPs, router, experts, norms and layer
  scalars), every weight in the model's dtype except the experts, which take their form:
  unquantised (the model's dtype), "fp8" or "int4" with their scales as kernels.quant stores them:
    fp8   data 1 byte per weight [E, N, K],  scale fp32 [E, N]
    int4  data 1/2 byte per weight [E, N, K/2],  scale bf16 [E, N, ceil(K / G)], G the group size;
- the KV cache of `context_tokens + canvas_length` positions: per layer its kv heads x head dim,
  keys and values both (a k = v layer shares the projection, not the cache: its keys are normed
  and rotated, its values only normed, so the engine keeps both); `documents` such caches;
- activations: the prefill of the context and one denoising step of the canvas over it, added (the
  captured step keeps its own memory pool, and the allocator does not always reuse one pass's
  blocks for the other); each counts its live [T, .] tensors, the attention scores as the math path
  of scaled_dot_product_attention makes them (fp32 scores and softmax; the fused kernels need less),
  the MoE routing workspace and, for the canvas, the head: six [C, V] fp32 tensors unfused (logits,
  probabilities, the previous step's pair kept for self-conditioning, the entropy's temporaries)
  or the fused head's [C, chunk] pieces;
- loading: what quantising the experts while loading holds for a moment, beyond the weights (one
  expert tensor as read plus its quantised pieces and their stack); it is not added to the
  activations, which come only after loading;
- margin: MARGIN_FIXED for what the free memory reported after CUDA starts does not yet hold
  (cuBLAS workspaces, loaded Triton kernels, the captured graph's bookkeeping) plus MARGIN_SHARE of
  the cache and activations, which are allocated and freed every fill, for the caching allocator's
  fragmentation (the weights are large tensors allocated once).
total = weights + max(kv cache + activations, loading) + margin.

`plan_for_device` compares the totals with the device's free bytes and picks the first form that
fits (unquantised -> fp8 -> int4 experts) or says that none does and what each would need.
Letters: T positions of a pass, S positions it attends to, C canvas, H hidden, V vocabulary,
E experts, K experts per token, I expert intermediate size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from diffill.kernels.quant import DEFAULT_GROUP_SIZE as GROUP_SIZE
from diffill.kernels.quant import FORMATS as QUANT_FORMS
from diffill.model.engine.config import ModelConfig

FORMS = (None, *QUANT_FORMS)   # None: experts unquantised, in the model's dtype; "auto" tries them in this order
DEFAULT_CONTEXT_TOKENS = 2048  # the server's prefix + suffix budget when none is set (lsp.pipeline.complete)
MARGIN_FIXED = 1 << 30         # 1 GiB
MARGIN_SHARE = 0.10
UNFUSED_HEAD_TENSORS = 6       # [C, V] fp32 tensors live at once in a denoising step's unfused head
GB = 1e9

WEIGHT_GROUPS = ("embedding", "attention", "mlp", "router", "experts", "norms")


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    from diffill.model.engine.checkpoint import resolve_dtype
    return resolve_dtype(dtype, "cuda")  # "auto" plans for a GPU: bfloat16


def dtype_label(dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(_dtype(dtype), str(dtype))


def form_label(experts: str | None, dtype) -> str:
    """'in bf16' for unquantised experts, 'with fp8 experts' otherwise."""
    return f"in {dtype_label(dtype)}" if experts is None else f"with {experts} experts"


def form_name(experts: str | None, dtype) -> str:
    """'bf16' for unquantised experts, 'fp8 experts' otherwise."""
    return dtype_label(dtype) if experts is None else f"{experts} experts"


# ---- weights -------------------------------------------------------------------------------------

def expert_shapes(cfg: ModelConfig) -> list[tuple[int, int, int]]:
    """Per layer, gate_up [E, 2I, H] and down [E, H, I]."""
    e, i, h = cfg.num_experts, cfg.moe_intermediate_size, cfg.hidden_size
    return [(e, 2 * i, h), (e, h, i)] * cfg.num_layers


def parameter_counts(cfg: ModelConfig) -> dict[str, int]:
    """Weights per group, in elements, as transformer.DiffusionGemma holds them (layer scalars included)."""
    h, v, nh = cfg.hidden_size, cfg.vocab_size, cfg.num_heads
    attention = norms = 0
    for spec in cfg.layers:
        q = o = h * nh * spec.head_dim
        k = h * spec.num_kv_heads * spec.head_dim
        attention += q + k + (0 if spec.k_eq_v else k) + o
        norms += 7 * h + 2 * spec.head_dim + 2  # 7 block norms, q_norm, k_norm; decoder + encoder scalar
    norms += 2 * h                                # the final norm, self-conditioning's pre_norm
    mlp = 3 * h * cfg.intermediate_size * (cfg.num_layers + 1)  # every layer's dense MLP + self-conditioning
    return {
        "embedding": v * h * (1 if cfg.tie_word_embeddings else 2),
        "attention": attention,
        "mlp": mlp,
        "router": cfg.num_layers * (cfg.num_experts * h + h + cfg.num_experts),
        "experts": sum(math.prod(s) for s in expert_shapes(cfg)),
        "norms": norms,
    }


def active_parameters(cfg: ModelConfig) -> int:
    """Weights one token reads: all but the experts it is not routed to."""
    counts = parameter_counts(cfg)
    return sum(counts.values()) - counts["experts"] * (cfg.num_experts - cfg.top_k) // cfg.num_experts


def quantised_bytes(shape: tuple[int, int, int], experts: str, group_size: int = GROUP_SIZE) -> int:
    """Bytes of one [E, N, K] expert tensor in a kernels.quant format: data plus scales."""
    e, n, k = shape
    if experts == "fp8":
        return e * n * k + e * n * 4
    if experts == "int4":
        return e * n * (k // 2) + e * n * math.ceil(k / group_size) * 2
    raise ValueError(f"unknown experts form {experts!r}; expected one of {', '.join(QUANT_FORMS)}")


def weight_bytes(cfg: ModelConfig, dtype, experts: str | None = None, group_size: int = GROUP_SIZE) -> dict[str, int]:
    """Bytes per weight group: everything in `dtype`, the experts in their form."""
    size = _dtype(dtype).itemsize
    out = {name: n * size for name, n in parameter_counts(cfg).items()}
    if experts is not None:
        out["experts"] = sum(quantised_bytes(s, experts, group_size) for s in expert_shapes(cfg))
    return out


# ---- cache and activations --------------------------------------------------------------------------

def kv_bytes_per_token(cfg: ModelConfig, dtype) -> int:
    """Keys and values of one cached position, all layers."""
    return sum(2 * s.num_kv_heads * s.head_dim for s in cfg.layers) * _dtype(dtype).itemsize


def pass_bytes(cfg: ModelConfig, dtype, new: int, seen: int, head_chunk: int | None = None,
               encoder: bool = True) -> int:
    """The working set of one pass of `new` positions attending to `seen` (cached + new): the
    encoder's prefill (encoder=True) or a denoising step of the canvas, head included (encoder=False;
    head_chunk None: the unfused head, else the fused head walking the vocabulary in such chunks)."""
    a = _dtype(dtype).itemsize
    t, s, h, nh = new, seen, cfg.hidden_size, cfg.num_heads
    q_width = nh * max(l.head_dim for l in cfg.layers)
    kv_width = max(l.num_kv_heads * l.head_dim for l in cfg.layers)
    k, i = cfg.top_k, cfg.moe_intermediate_size
    n = 8 * t * h * a                                # residual stream, normed input, attention/MLP/MoE outputs, sums
    n += t * (3 * q_width + 4 * kv_width) * a        # q, rotated q, attention output; k and v raw, normed, rotated
    n += 2 * nh * t * s * 4                          # attention scores [nh, T, S] and their softmax, fp32
    n += 2 * 2 * kv_width * s * a                    # one layer's keys and values copied by torch.cat, twice
    if encoder:
        n += t * s * (2 * a + 3)                     # the full and sliding additive masks [T, S] and their bools
    n += 3 * t * cfg.intermediate_size * a           # dense MLP: gate, up, their product [T, 2112]
    n += 2 * t * cfg.num_experts * 4                 # router scores and probabilities [T, E] fp32
    n += t * k * (2 * i * a + h * 4)                 # routed rows: GEMM 1 [T*K, 2I], GEMM 2 per slot [T*K, H] fp32
    n += 3 * i * h * a                               # one expert dequantised by the reference path
    if not encoder:
        v = cfg.vocab_size
        if head_chunk is None:
            n += UNFUSED_HEAD_TENSORS * t * v * 4
        else:
            n += 4 * t * min(head_chunk, v) * 4 + 2 * t * h * 4  # chunk logits, exp, noise, sample; soft sums
    return n


def loading_bytes(cfg: ModelConfig, dtype, experts: str | None, group_size: int = GROUP_SIZE) -> int:
    """Held for a moment while an expert tensor is quantised on the device: the tensor as read
    (counted in `dtype`) plus its quantised pieces and their stack. 0 when nothing is quantised."""
    if experts is None:
        return 0
    size = _dtype(dtype).itemsize
    return max(math.prod(s) * size + 2 * quantised_bytes(s, experts, group_size) for s in expert_shapes(cfg))


# ---- the estimate -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """Bytes a fill needs in one form of the experts."""
    dtype: torch.dtype
    experts: str | None       # None: unquantised, in `dtype`
    cached_tokens: int        # context + one canvas
    weights: dict[str, int]   # WEIGHT_GROUPS -> bytes
    kv_cache: int
    activations: int
    loading: int
    margin: int

    @property
    def weight_total(self) -> int:
        return sum(self.weights.values())

    @property
    def total(self) -> int:
        return self.weight_total + max(self.kv_cache + self.activations, self.loading) + self.margin

    @property
    def label(self) -> str:
        return form_label(self.experts, self.dtype)

    def parts(self) -> dict[str, int]:
        """Every part in bytes, for printing: the weight groups, then the rest and the total."""
        return {**{f"weights.{k}": v for k, v in self.weights.items()}, "weights": self.weight_total,
                "kv_cache": self.kv_cache, "activations": self.activations, "loading": self.loading,
                "margin": self.margin, "total": self.total}


def estimate(cfg: ModelConfig, dtype, experts: str | None = None, context_tokens: int | None = None,
             canvas_length: int | None = None, head_chunk: int | None = None, documents: int = 1,
             group_size: int | None = None) -> Estimate:
    """The memory of a fill: `context_tokens` (default: the checkpoint's own budget, else the
    server's default) encoded, then a canvas of `canvas_length` (default: the checkpoint's) denoised
    over them; `documents` prefix caches kept (the Infiller keeps one per document, up to its
    max_documents)."""
    dtype = _dtype(dtype)
    stored, stored_group = stored_experts(cfg)
    group_size = group_size or (stored_group if experts == stored and stored else GROUP_SIZE)
    context = context_tokens or default_context_tokens(cfg)
    c = canvas_length or cfg.canvas_length
    cached = context + c
    weights = weight_bytes(cfg, dtype, experts, group_size)
    kv = documents * kv_bytes_per_token(cfg, dtype) * cached
    acts = (pass_bytes(cfg, dtype, context, context, encoder=True)
            + pass_bytes(cfg, dtype, c, cached, head_chunk, encoder=False))
    load = loading_bytes(cfg, dtype, experts, group_size) if experts != stored else 0
    margin = MARGIN_FIXED + int(MARGIN_SHARE * (kv + acts))
    return Estimate(dtype, experts, cached, weights, kv, acts, load, margin)


def default_context_tokens(cfg: ModelConfig) -> int:
    """The prefix + suffix budget the checkpoint names (diffill_context_tokens), else the server's default."""
    return int(cfg.raw.get("diffill_context_tokens") or DEFAULT_CONTEXT_TOKENS)


def stored_experts(cfg: ModelConfig) -> tuple[str | None, int]:
    """(form, group size) of the experts as the checkpoint's files hold them: a quantised checkpoint
    (config.json's quantization_config) fixes its form; (None, GROUP_SIZE) when unquantised."""
    q = cfg.raw.get("quantization_config")
    if not q:
        return None, GROUP_SIZE
    return q.get("format"), int(q.get("group_size", GROUP_SIZE))


# ---- the plan -------------------------------------------------------------------------------------------

@dataclass
class Plan:
    experts: str | None        # the form to load: pass it to load_model(experts=...); None: unquantised
    fits: bool | None          # None when the free memory is unknown
    message: str               # one line for the status and the log
    estimate: Estimate         # of the chosen form (of the smallest when none fits)
    estimates: dict = field(default_factory=dict)  # every form considered -> Estimate
    free_bytes: int | None = None


def _gb(n: int) -> str:
    return f"{n / GB:.1f} GB"


def plan_for_device(config: ModelConfig, dtype, experts: str | None = "auto", free_bytes: int | None = None,
                    context_tokens: int | None = None, canvas_length: int | None = None,
                    head_chunk: int | None = None, documents: int = 1) -> Plan:
    """Choose the experts' form for a device with `free_bytes` free (torch.cuda.mem_get_info()[0];
    None: unknown, fits is None and the first candidate is chosen).

    experts: "auto" tries unquantised, then fp8, then int4 experts and takes the first that fits;
    None (or "none"), "fp8" or "int4" asks for that form only. A quantised checkpoint's form is
    fixed by its files: it is the only candidate, whatever was asked.
    dtype: the model's dtype (a torch dtype or its name; "auto": bfloat16).
    The other arguments are estimate()'s.
    """
    if experts == "none":
        experts = None
    if experts != "auto" and experts not in FORMS:
        raise ValueError(f"unknown experts form {experts!r}; choose auto, none, {', '.join(QUANT_FORMS)}")
    stored, _ = stored_experts(config)
    note = ""
    if stored is not None:
        if experts not in ("auto", stored):
            note = f" (the checkpoint stores {stored} experts: {form_label(experts, dtype)} cannot be made from them)"
        candidates = [stored]
    else:
        candidates = list(FORMS) if experts == "auto" else [experts]
    estimates = {form: estimate(config, dtype, form, context_tokens, canvas_length, head_chunk, documents)
                 for form in (candidates if stored is not None else FORMS)}
    needs = ", ".join(f"{_gb(e.total)} {e.label}" for e in estimates.values())
    if free_bytes is None:
        chosen = estimates[candidates[0]]
        return Plan(chosen.experts, None, f"needs {needs}; free memory unknown: loading {chosen.label}{note}",
                    chosen, estimates, None)
    free = f"{_gb(free_bytes)} free"
    fitting = [estimates[f] for f in candidates if estimates[f].total <= free_bytes]
    if fitting:
        chosen = fitting[0]
        verdict = f"{form_name(chosen.experts, dtype)} {'fits' if chosen.experts is None else 'fit'}"
        return Plan(chosen.experts, True, f"needs {needs}; {free}: {verdict}{note}", chosen, estimates, free_bytes)
    would = [e for e in estimates.values() if e.total <= free_bytes]
    if would:
        advice = (f"{form_name(would[0].experts, dtype)} would fit "
                  f"(ask for experts {would[0].experts or 'none'}, or auto)")
    else:
        least = min(estimates.values(), key=lambda e: e.total)
        advice = (f"nothing fits: {form_name(least.experts, dtype)} need {_gb(least.total - free_bytes)} more "
                  f"than is free (free GPU memory, or lower the context budget)")
    smallest = min((estimates[f] for f in candidates), key=lambda e: e.total)
    return Plan(smallest.experts, False, f"needs {needs}; {free}: {advice}{note}", smallest, estimates, free_bytes)


def free_device_bytes(device) -> int | None:
    """Free bytes on a CUDA device (torch.cuda.mem_get_info), None for the CPU or without CUDA."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info(device)[0])
