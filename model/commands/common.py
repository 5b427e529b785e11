"""Shared by the model commands: open the requested or the default model with a clear error."""
import sys


def open_model(path, device="cpu", dtype=None):
    """(model, note): note says when the default is a random-weight stand-in."""
    import torch
    from diffill.model import CheckpointError, load_model
    from diffill.model.default import default_model_path

    note = None
    if not path:
        path, random = default_model_path()
        if random:
            note = ("diffill: no embedded model in this build; using a random-weight checkpoint, "
                    "so the completion is noise")
    try:
        return load_model(path, device=device, dtype=dtype or torch.float32), note
    except CheckpointError as exc:
        print(f"diffill: cannot load the model: {exc}", file=sys.stderr)
        raise SystemExit(1)
