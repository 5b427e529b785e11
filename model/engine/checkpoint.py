"""Reading and writing HF-layout DiffusionGemma checkpoints (safetensors only, never pickle).

Layout: config.json, model.safetensors or model.safetensors.index.json + shards, tokenizer.json,
generation_config.json. Only text weights are read (the vision tower's tensors are never touched);
ties are honoured (the encoder's text weights are the decoder's; lm_head is the embedding).
Tensors are read one at a time from memory-mapped files, so peak memory stays near the weights' size.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from diffill.kernels import quant
from diffill.model.engine.config import CheckpointError, GenerationSettings, ModelConfig
from diffill.model.engine.tokenizer import Tokenizer
from diffill.model.engine.transformer import DiffusionGemma, Experts, rope_inv_freq

DECODER, ENCODER = "model.decoder.", "model.encoder.language_model."


INDEX = "model.safetensors.index.json"


def read_weight_map(directory: Path) -> dict[str, str] | None:
    """A sharded checkpoint's tensor name -> shard file name, or None without an index."""
    index = directory / INDEX
    if not index.is_file():
        return None
    try:
        return json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{index} is malformed ({exc})") from None


class _Weights:
    """Name -> tensor over one safetensors file or a sharded index, opened lazily."""

    def __init__(self, directory: Path):
        single = directory / "model.safetensors"
        weight_map = read_weight_map(directory)
        if weight_map is not None:
            self.where = {k: directory / v for k, v in weight_map.items()}
        elif single.is_file():
            self.where = {k: single for k in self._keys(single)}
        else:
            pickles = [p.name for p in directory.glob("*.bin")] + [p.name for p in directory.glob("*.pt")]
            hint = (f" (found {', '.join(pickles)}: pickle checkpoints are refused; convert them to safetensors)"
                    if pickles else "")
            raise CheckpointError(f"{directory} has no model.safetensors or {INDEX}{hint}")
        self._open = {}

    @staticmethod
    def _keys(path: Path) -> list[str]:
        try:
            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path} is truncated or corrupt ({exc}); download or write it again") from None

    def __contains__(self, key):
        return key in self.where

    def get(self, key: str) -> torch.Tensor:
        path = self.where[key]
        if not path.is_file():
            raise CheckpointError(f"shard {path.name} (holding {key}) is missing from {path.parent}")
        try:
            if path not in self._open:
                self._open[path] = safe_open(str(path), framework="pt")
            return self._open[path].get_tensor(key)
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path} is truncated or corrupt ({exc}); download or write it again") from None


def checkpoint_keys(name: str) -> list[str]:
    """Our parameter name -> keys that may hold it in an HF checkpoint, preferred first."""
    if name == "lm_head.weight":
        return ["lm_head.weight"]
    if name.startswith("self_conditioning."):
        return [DECODER + name]
    if name.endswith(".encoder_layer_scalar"):
        base = name.replace(".encoder_layer_scalar", ".layer_scalar")
        return [ENCODER + base, DECODER + base]
    return [DECODER + name, ENCODER + name]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def resolve_path(name: str | os.PathLike, allow_download: bool = False) -> Path:
    """A directory, or a hub id found in the local hub cache (downloaded only when allowed)."""
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise CheckpointError(f"model {name!r} is not a checkpoint folder or hub id")
    p = Path(name).expanduser()
    try:
        if p.is_dir():
            return p
        if p.exists():
            raise CheckpointError(f"{p} is a file; give the checkpoint's directory")
    except OSError as exc:  # a name too long for the file system, a folder we may not enter, ...
        shown = str(name) if len(str(name)) <= 80 else str(name)[:77] + "..."
        raise CheckpointError(f"model {shown!r} is not a usable folder or hub id: {exc.strerror}") from None
    if "/" in str(name) and not str(name).startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download
            return Path(snapshot_download(str(name), local_files_only=not allow_download,
                                          allow_patterns=["*.json", "*.safetensors"]))
        except Exception as exc:
            if not allow_download:  # the library's own advice names its internals: say what to set here
                raise CheckpointError(
                    f"model {name} is not a folder and not in the local hub cache; set `allowDownload` "
                    f"(diffill.allowDownload in VS Code, settings.allowDownload in Neovim) to fetch it, or give "
                    f"the checkpoint's folder") from None
            raise CheckpointError(f"model {name} could not be downloaded: {_first_line(exc)}") from None
    raise CheckpointError(f"model directory {p} does not exist")


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_dtype(dtype, device="cpu") -> torch.dtype:
    """A torch dtype from a dtype, a name, or "auto": bfloat16 on CUDA, float32 on the CPU.

    On the CPU bf16 pays only for large matrices, and only on CPUs with native bf16 (measured here:
    about 2x faster per step for a 43M-parameter model, many times slower for the small embedded
    model, whose time goes to element-wise work), so it is a choice, not the default."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model(path, device="cpu", dtype=torch.float32, allow_download: bool = False,
               experts: str | None = None, group_size: int = quant.DEFAULT_GROUP_SIZE) -> DiffusionGemma:
    """Load a DiffusionGemma checkpoint (text stack only) into our engine, in inference mode.

    dtype: a torch dtype, a name ("float32", "bfloat16", "float16") or "auto" (see resolve_dtype).
    experts: None loads the experts as stored; "fp8" or "int4" quantises an unquantised checkpoint's
    experts while loading, each tensor on `device` right after it is read (as `diffill quantize`
    does, so the same QuantWeight results), so the unquantised experts are never all on the device.
    A quantised checkpoint's form is fixed by its files: asking for another is refused."""
    dtype = resolve_dtype(dtype, device)
    directory = resolve_path(path, allow_download)
    cfg = ModelConfig.from_file(directory / "config.json")
    weights = _Weights(directory)
    qcfg = cfg.raw.get("quantization_config")
    if qcfg and qcfg.get("quant_method") != "diffill":
        raise CheckpointError(f"unsupported quantization_config {qcfg.get('quant_method')!r}: "
                              "diffill reads its own fp8/int4 format (diffill quantize)")
    if experts is not None and experts not in quant.FORMATS:
        raise CheckpointError(f"unknown experts form {experts!r}: choose one of {', '.join(quant.FORMATS)} "
                              "(or none to load them as stored)")
    if qcfg and experts not in (None, qcfg.get("format")):
        raise CheckpointError(f"{directory} stores {qcfg.get('format')} experts; {experts} experts cannot be "
                              "made from them: load it as stored, or quantise the original checkpoint")
    quantise = None if qcfg else experts
    with torch.device("meta"):
        model = DiffusionGemma(cfg)
    missing = []
    for mod_name, mod in model.named_modules():
        for attr, param in list(mod._parameters.items()) + list(mod._buffers.items()):
            if param is None or attr in mod._non_persistent_buffers_set:  # no bias; RoPE tables: computed below
                continue
            name = f"{mod_name}.{attr}" if mod_name else attr
            key = next((k for k in checkpoint_keys(name) if k in weights), None)
            if key is None:
                if attr.endswith("layer_scalar"):  # absent scalars are 1
                    _set(mod, attr, torch.ones(1, dtype=dtype, device=device))
                    continue
                missing.append(checkpoint_keys(name)[0])
                continue
            if qcfg and isinstance(mod, Experts) and key + "_scale" in weights:
                qw = quant.load_quant_weight(weights.get(key).to(device), weights.get(key + "_scale").to(device),
                                             qcfg, dtype)
                if tuple(qw.shape) != tuple(param.shape):
                    raise CheckpointError(f"{key}: quantised shape {tuple(qw.shape)} does not match the "
                                          f"config's {tuple(param.shape)}")
                del mod._parameters[attr]
                setattr(mod, attr, qw)
                continue
            t = weights.get(key)
            if tuple(t.shape) != tuple(param.shape):
                raise CheckpointError(f"{key} has shape {tuple(t.shape)} but config.json implies "
                                      f"{tuple(param.shape)}: the weights and config.json do not belong together")
            _check_values(key, t, param)
            if quantise and isinstance(mod, Experts):
                try:
                    qw = quantize_experts(t, quantise, group_size, device, dtype)
                except ValueError as exc:
                    raise CheckpointError(f"{key}: cannot quantise to {quantise}: {exc}") from None
                del t                                  # the unquantised tensor goes before the next is read
                del mod._parameters[attr]
                setattr(mod, attr, qw)
                continue
            _set(mod, attr, t.to(device=device, dtype=dtype))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CheckpointError(f"{directory} lacks weights: {', '.join(missing[:5])}{more}")
    for name, buf in model.named_buffers():  # RoPE tables: computed, not stored
        if buf.is_meta:
            mod_name, _, attr = name.rpartition(".")
            mod = model.get_submodule(mod_name) if mod_name else model
            _set(mod, attr, rope_inv_freq(cfg.layers[int(attr.rsplit("_", 1)[1])]).to(device))
    model.tokenizer = Tokenizer.from_dir(directory)
    model.generation = GenerationSettings.from_file(directory / "generation_config.json", cfg.eos_token_id)
    model.tokenizer.eos_ids = sorted(set(model.generation.eos_token_id))
    model.path = directory
    model.eval()
    return model


def quantize_experts(t: torch.Tensor, fmt: str, group_size: int, device, dtype=None) -> quant.QuantWeight:
    """One expert tensor [E, N, K] as read from a checkpoint -> its QuantWeight on `device`, quantised
    there from the stored values, dequantising to `dtype` (default: the stored one). Both
    `diffill quantize` and load_model(experts=...) quantise through here. A shape the format cannot
    take raises ValueError."""
    return quant.quantize(t.to(device), fmt, group_size, dtype=dtype)


FINITE_SAMPLE = 1 << 16  # elements of a large tensor checked for NaN/inf (all of a smaller one)


def _check_values(key: str, t: torch.Tensor, param: torch.Tensor) -> None:
    """Weights stored as floats (not int8 or bool outside a quantised layout), and finite: a tensor
    of NaN or inf is refused by name. Large tensors are checked on an even sample of their elements,
    so loading costs no second pass over the weights."""
    if param.is_floating_point() and not t.is_floating_point():
        raise CheckpointError(f"{key} is stored as {t.dtype}, but weights must be floating point (float32, "
                              f"bfloat16 or float16); a quantised checkpoint needs its quantization_config "
                              f"and *_scale tensors")
    if not t.is_floating_point() or t.numel() == 0:
        return
    flat = t.reshape(-1)
    if flat.numel() > FINITE_SAMPLE:
        flat = flat[torch.linspace(0, flat.numel() - 1, FINITE_SAMPLE, dtype=torch.float64).long()]
    if not bool(torch.isfinite(flat).all()):
        raise CheckpointError(f"{key} holds NaN or infinite values: the checkpoint is corrupt (a diverged "
                              f"training run, or a broken conversion); write or download it again")


def _set(mod: nn.Module, attr: str, t: torch.Tensor):
    if attr in mod._parameters:
        mod._parameters[attr] = nn.Parameter(t, requires_grad=False)
    else:
        mod._buffers[attr] = t


def state_for_checkpoint(model: DiffusionGemma) -> dict[str, torch.Tensor]:
    """Our tensors under their HF keys (decoder names; the encoder's layer scalars under encoder names)."""
    out = {}
    for name, t in list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers()
                                                     if not n.rsplit(".", 1)[-1].startswith("inv_freq")]:
        out[checkpoint_keys(name)[0]] = t.detach().contiguous()
    return out


def save_checkpoint(model: DiffusionGemma, out_dir, max_shard_bytes: int | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write the model in HF layout: config.json, (sharded) safetensors, tokenizer.json, generation_config.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).cpu()
               for k, v in state_for_checkpoint(model).items()}
    write_safetensors(tensors, out, max_shard_bytes)
    (out / "config.json").write_text(json.dumps(model.config.raw, indent=2) + "\n", encoding="utf-8")
    if model.tokenizer is not None:
        model.tokenizer.save(out)
    if model.generation is not None:
        write_generation_config(out, model.generation)
    return out


def write_safetensors(tensors: dict[str, torch.Tensor], out: Path, max_shard_bytes: int | None = None):
    for old in list(out.glob("model*.safetensors")) + list(out.glob(INDEX)):
        old.unlink()
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        return
    shards, cur, size = [], {}, 0
    for k in sorted(tensors):
        n = tensors[k].numel() * tensors[k].element_size()
        if cur and size + n > max_shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k], size = tensors[k], size + n
    shards.append(cur)
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in shard})
    (out / INDEX).write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n", encoding="utf-8")


def write_generation_config(out: Path, g: GenerationSettings):
    d = {
        "max_new_tokens": g.max_new_tokens,
        "max_denoising_steps": g.max_denoising_steps,
        "sampler_config": {"entropy_bound": g.entropy_bound, "_cls_name": "EntropyBoundSamplerConfig"},
        "t_min": g.t_min, "t_max": g.t_max,
        "stability_threshold": g.stability_threshold,
        "confidence_threshold": g.confidence_threshold,
        "eos_token_id": g.eos_token_id,
    }
    (Path(out) / "generation_config.json").write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
