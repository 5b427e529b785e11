"""diffill.model: the DiffusionGemma engine (loading, the text stack, samplers, prompt formats).

Names are imported on first use, so that importing a light submodule (a command's options, the
default model's location) does not load torch.
"""
import importlib

_WHERE = {
    "build_model": "builder", "build_random_checkpoint": "builder",
    "load_model": "checkpoint", "save_checkpoint": "checkpoint", "resolve_dtype": "checkpoint",
    "CheckpointError": "config", "GenerationSettings": "config", "ModelConfig": "config",
    "DefaultModel": "default", "default_model_path": "default",
    "KVCache": "kv_cache", "DiffusionGemma": "transformer",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".engine.{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
