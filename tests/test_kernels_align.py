"""The token-to-expert alignment kernel against its PyTorch reference (Triton interpreter on CPU)."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import given, settings, strategies as st  # noqa: E402

from diffill.kernels.align import align, align_reference, max_padded  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def random_ids(M, K, E, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(M)]).int()


def check_alignment(ids, E, block_m):
    sorted_slots, block_expert, total = (t.cpu() for t in align(ids.to(DEVICE), E, block_m))
    ref_slots, ref_blocks, ref_total = align_reference(ids, E, block_m)
    n = int(ref_total)
    assert int(total) == n
    assert torch.equal(sorted_slots[:n], ref_slots[:n])
    assert torch.equal(block_expert, ref_blocks)
    return sorted_slots[:n], block_expert, n


def test_reference_alignment_groups_every_slot_once_under_its_expert():
    M, K, E, BM = 9, 3, 5, 4
    ids = random_ids(M, K, E)
    slots, blocks, total = align_reference(ids, E, BM)
    flat = ids.reshape(-1)
    real = slots[: int(total)]
    real = real[real < M * K]
    assert sorted(real.tolist()) == list(range(M * K))
    for b, e in enumerate(blocks.tolist()):
        rows = slots[b * BM:(b + 1) * BM]
        rows = rows[rows < M * K]
        if e < 0:
            assert b * BM >= int(total)
        else:
            assert (flat[rows.long()] == e).all()
            assert torch.equal(rows, rows.sort().values)            # stable: slots in increasing order


def test_align_matches_reference_with_empty_experts_and_tiny_batches():
    check_alignment(torch.tensor([[2]], dtype=torch.int32), 8, 16)          # one slot, seven empty experts
    check_alignment(torch.tensor([[0, 5], [5, 0], [0, 5]], dtype=torch.int32), 8, 16)
    check_alignment(random_ids(4, 4, 4), 4, 16)                              # top_k = E


def test_align_at_the_real_expert_count():
    _, blocks, total = check_alignment(random_ids(64, 8, 128, seed=3), 128, 16)
    assert total <= max_padded(64 * 8, 128, 16)
    assert (blocks[total // 16:] == -1).all()


@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 40), E=st.integers(1, 24), block_m=st.sampled_from([16, 32, 64]), data=st.data())
def test_align_matches_reference_for_any_routing(M, E, block_m, data):
    K = data.draw(st.integers(1, E))
    ids = random_ids(M, K, E, seed=data.draw(st.integers(0, 2**16)))
    check_alignment(ids, E, block_m)
