"""Shared fixtures: tiny real checkpoints (random weights, real safetensors files, real tokenizers)."""
import os

import pytest
import torch

# Without CUDA, Triton kernels run in Triton's interpreter. The variable must be set before triton is
# first imported by anything in this process (transformers may import it), not only before our kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A DiffusionGemma-like checkpoint: uniform noise, chat turn markers, no FIM tokens."""
    from diffill.model import build_random_checkpoint
    return build_random_checkpoint(tmp_path_factory.mktemp("tiny"), seed=1, canvas_length=16)


@pytest.fixture(scope="session")
def fim_checkpoint(tmp_path_factory):
    """Like the embedded model: FIM tokens, mask (absorbing) noise."""
    from diffill.model import build_random_checkpoint
    return build_random_checkpoint(tmp_path_factory.mktemp("fim"), seed=2, canvas_length=16, fim=True,
                                   noise="mask", prompt_format="fim")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny shapes: one thread is fastest, and it does not spin against other load on the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
