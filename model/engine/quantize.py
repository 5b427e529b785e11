"""`diffill quantize`: write an fp8 or int4 copy of a checkpoint's expert weights.

    diffill quantize --model DIR --out DIR --to fp8|int4 [--group-size 128]

The checkpoint's safetensors files (one file or an index with shards) are read one tensor at a
time; every `...experts.gate_up_proj` and `...experts.down_proj` is quantised (see
diffill.kernels.quant for the formats) and written under its own key with its scale under
`key + "_scale"`; every other tensor is copied unchanged, into a shard of the same name.
config.json gains a "quantization_config"; the tokenizer, generation config and other files are
copied. config.json is written last, so an interrupted run leaves no loadable half-checkpoint.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from diffill.kernels import quant

from diffill.model.engine.checkpoint import INDEX, quantize_experts, read_weight_map
from diffill.model.engine.config import CheckpointError

EXPERT_SUFFIXES = (".experts.gate_up_proj", ".experts.down_proj")


def is_expert_weight(key: str) -> bool:
    return key.endswith(EXPERT_SUFFIXES)


def quantize_checkpoint(model_dir, out_dir, fmt: str, group_size: int = quant.DEFAULT_GROUP_SIZE,
                        device="cpu", overwrite: bool = False, log=print) -> Path:
    """Quantise model_dir's expert weights into out_dir; returns out_dir."""
    src, out = Path(model_dir).expanduser(), Path(out_dir).expanduser()
    if fmt not in quant.FORMATS:
        raise CheckpointError(f"unknown format {fmt!r}: choose one of {', '.join(quant.FORMATS)}")
    if fmt == "int4" and group_size <= 0:
        raise CheckpointError(f"the int4 group size must be positive, got {group_size}")
    if not src.is_dir():
        raise CheckpointError(f"model directory {src} does not exist")
    config_path = src / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{src} has no config.json: is it a checkpoint directory?")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path} is malformed ({exc})") from None
    if "quantization_config" in config:
        have = config["quantization_config"].get("format", config["quantization_config"].get("quant_method"))
        raise CheckpointError(f"{src} is already quantised ({have}); quantise the original checkpoint instead")
    shards = _shards(src)
    if out.resolve() == src.resolve():
        raise CheckpointError("--out must differ from --model: the original checkpoint is never modified")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(f"{out} already exists and is not empty; choose a new directory or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("*.safetensors"), out / INDEX, out / "config.json"]:
        stale.unlink(missing_ok=True)

    started = time.monotonic()
    weight_map, total_in, total_out, n_quantised = {}, 0, 0, 0
    for i, shard in enumerate(shards, 1):
        tensors, q_here, bytes_in = {}, 0, 0
        try:
            with safe_open(str(src / shard), framework="pt") as f:
                keys = list(f.keys())
                for key in keys:
                    t = f.get_tensor(key)
                    bytes_in += t.numel() * t.element_size()
                    if is_expert_weight(key):
                        qw = quantize_experts(t, fmt, group_size, device)
                        tensors[key], tensors[key + "_scale"] = qw.data.cpu(), qw.scale.cpu()
                        q_here += 1
                    else:
                        tensors[key] = t
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{src / shard} is truncated or corrupt ({exc})") from None
        except ValueError as exc:                                               # a shape quant cannot take
            raise CheckpointError(f"{src / shard}: {exc}") from None
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        bytes_out = sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update({k: shard for k in tensors})
        total_in, total_out, n_quantised = total_in + bytes_in, total_out + bytes_out, n_quantised + q_here
        log(f"quantize: [{i}/{len(shards)}] {shard}: {q_here} expert tensors to {fmt}, "
            f"{len(keys) - q_here} copied ({_gb(bytes_in)} -> {_gb(bytes_out)})")
    if n_quantised == 0:
        raise CheckpointError(f"{src} has no expert weights (keys ending in {' or '.join(EXPERT_SUFFIXES)}); "
                              "nothing to quantise")
    if (src / INDEX).is_file():
        index = json.loads((src / INDEX).read_text(encoding="utf-8"))
        index["weight_map"] = weight_map
        index.setdefault("metadata", {})["total_size"] = total_out
        (out / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    for path in src.iterdir():                   # tokenizer, generation config, chat template, ...
        if path.is_file() and path.suffix != ".safetensors" and path.name not in (INDEX, "config.json"):
            shutil.copy2(path, out / path.name)
    config["quantization_config"] = quant.quantization_config(fmt, group_size)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    log(f"quantize: {n_quantised} expert tensors to {fmt}, {_gb(total_in)} -> {_gb(total_out)} "
        f"in {time.monotonic() - started:.1f} s: {out}")
    return out


def _shards(src: Path) -> list[str]:
    weight_map = read_weight_map(src)
    if weight_map is not None:
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (src / s).is_file()]
        if missing:
            raise CheckpointError(f"shard {missing[0]} listed in {INDEX} is missing from {src}")
        return shards
    if (src / "model.safetensors").is_file():
        return ["model.safetensors"]
    raise CheckpointError(f"{src} has no model.safetensors or {INDEX}: nothing to quantise")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
