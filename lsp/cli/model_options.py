"""Shared by the commands that run a model: their common options, and opening the requested or the
default model with a clear error. Imports nothing heavy at module level."""
import sys


def add_model_arguments(p):
    p.add_argument("--model", help="checkpoint directory or cached hub id (default: the embedded model)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights' dtype; auto: bfloat16 on CUDA, float32 on the CPU")
    p.add_argument("--steps", type=int, help="maximum denoising steps per canvas (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)


def open_model(path, device="cpu", dtype="auto"):
    """(model, note): note says when the default is a random-weight stand-in."""
    from diffill.model import CheckpointError, load_model
    from diffill.model.engine.default import default_model_path

    note = None
    if not path:
        path, random = default_model_path()
        if random:
            note = ("diffill: no embedded model in this build; using a random-weight checkpoint, "
                    "so the completion is noise")
    try:
        return load_model(path, device=device, dtype=dtype), note
    except CheckpointError as exc:
        print(f"diffill: cannot load the model: {exc}", file=sys.stderr)
        raise SystemExit(1)
