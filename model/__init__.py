"""diffill.model: the DiffusionGemma engine (loading, the text stack, samplers, prompt formats)."""
from .builder import build_model, build_random_checkpoint
from .checkpoint import load_model, save_checkpoint
from .config import CheckpointError, GenerationSettings, ModelConfig
from .default import DefaultModel, default_model_path
from .kv_cache import KVCache
from .transformer import DiffusionGemma

__all__ = ["load_model", "save_checkpoint", "build_model", "build_random_checkpoint", "CheckpointError",
           "GenerationSettings", "ModelConfig", "KVCache", "DiffusionGemma", "DefaultModel", "default_model_path"]
