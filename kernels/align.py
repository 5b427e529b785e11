"""Alignment of routed tokens to experts, the first step of the grouped expert GEMMs.

Letters: M tokens, K experts per token, S = M * K slots (slot s = m * K + k is token m's k-th
choice), E experts, BM the GEMM's BLOCK_M.

Every expert gets a run of positions padded up to a multiple of BM, so that each BM-row block of
the GEMMs belongs to exactly one expert:
- sorted_slots [P_max] int32: expert e's run starts at the sum of the padded counts of experts
  before it; its first count_e entries are its slots in increasing order, the rest hold the
  sentinel S (an empty row). Entries past the last run are never read.
- block_expert [P_max / BM] int32: the expert of each block, -1 for blocks past the last run (the
  GEMM programs of those blocks exit at once).
- total [1] int32: the padded length actually used.
P_max depends only on (S, E, BM), so nothing here waits for the GPU (CUDA-graph safe).
"""
import torch
import triton
import triton.language as tl


def max_padded(num_slots: int, num_experts: int, block_m: int) -> int:
    """The longest padded length any routing of num_slots slots can need."""
    bound = num_slots + min(num_experts, num_slots) * (block_m - 1)
    return triton.cdiv(bound, block_m) * block_m


def align_reference(topk_ids: torch.Tensor, num_experts: int, block_m: int):
    """Pure-PyTorch version of `align` (same outputs)."""
    flat = topk_ids.reshape(-1).long()
    S = flat.numel()
    P = max_padded(S, num_experts, block_m)
    counts = torch.bincount(flat, minlength=num_experts)
    padded = (counts + block_m - 1) // block_m * block_m
    starts = torch.cumsum(padded, 0) - padded
    order = torch.argsort(flat, stable=True)                                  # slots grouped by expert
    ids_sorted = flat[order]
    rank = torch.arange(S, device=flat.device) - (torch.cumsum(counts, 0) - counts)[ids_sorted]
    sorted_slots = torch.full((P,), S, dtype=torch.int32, device=flat.device)
    sorted_slots[starts[ids_sorted] + rank] = order.to(torch.int32)
    block_expert = torch.full((P // block_m,), -1, dtype=torch.int32, device=flat.device)
    owners = torch.repeat_interleave(torch.arange(num_experts, device=flat.device), padded // block_m)
    block_expert[: owners.numel()] = owners.to(torch.int32)
    total = padded.sum().reshape(1).to(torch.int32)
    return sorted_slots, block_expert, total


@triton.jit
def _align_kernel(ids_ptr, num_slots, sorted_ptr, block_expert_ptr, total_ptr, num_blocks,
                  E: tl.constexpr, E_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_S: tl.constexpr):
    # Program e < E writes expert e's run and blocks; program E marks the unused blocks.
    e = tl.program_id(0)
    experts = tl.arange(0, E_PAD)
    counts = tl.zeros([E_PAD], dtype=tl.int32)
    for start in range(0, num_slots, BLOCK_S):
        offs = start + tl.arange(0, BLOCK_S)
        ids = tl.load(ids_ptr + offs, mask=offs < num_slots, other=0)
        counts += tl.histogram(ids, E_PAD, mask=offs < num_slots)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    ends = tl.cumsum(padded, axis=0)
    total = tl.sum(padded, axis=0)
    if e == E:
        tl.store(total_ptr, total)
        for b0 in range(0, num_blocks, BLOCK_S):
            b = b0 + tl.arange(0, BLOCK_S)
            tl.store(block_expert_ptr + b, tl.full([BLOCK_S], -1, tl.int32),
                     mask=(b < num_blocks) & (b * BLOCK_M >= total))
    else:
        mine = experts == e
        start_e = tl.sum(tl.where(mine, ends - padded, 0), axis=0)
        count_e = tl.sum(tl.where(mine, counts, 0), axis=0)
        padded_e = tl.sum(tl.where(mine, padded, 0), axis=0)
        seen = count_e * 0
        for start in range(0, num_slots, BLOCK_S):
            offs = start + tl.arange(0, BLOCK_S)
            ids = tl.load(ids_ptr + offs, mask=offs < num_slots, other=-1)
            hit = (ids == e).to(tl.int32)
            rank = seen + tl.cumsum(hit, axis=0) - 1
            tl.store(sorted_ptr + start_e + rank, offs.to(tl.int32), mask=hit != 0)
            seen += tl.sum(hit, axis=0)
        pad = count_e + tl.arange(0, BLOCK_M)
        tl.store(sorted_ptr + start_e + pad, tl.full([BLOCK_M], 0, tl.int32) + num_slots, mask=pad < padded_e)
        for b in range(start_e // BLOCK_M, (start_e + padded_e) // BLOCK_M):
            tl.store(block_expert_ptr + b, e)


def align(topk_ids: torch.Tensor, num_experts: int, block_m: int):
    """(sorted_slots, block_expert, total) for topk_ids [M, K]: one launch of E + 1 programs."""
    ids = topk_ids.reshape(-1).to(torch.int32).contiguous()
    S = ids.numel()
    P = max_padded(S, num_experts, block_m)
    sorted_slots = torch.empty(P, dtype=torch.int32, device=ids.device)
    block_expert = torch.empty(P // block_m, dtype=torch.int32, device=ids.device)
    total = torch.empty(1, dtype=torch.int32, device=ids.device)
    _align_kernel[(num_experts + 1,)](
        ids, S, sorted_slots, block_expert, total, P // block_m,
        E=num_experts, E_PAD=triton.next_power_of_2(num_experts), BLOCK_M=block_m,
        BLOCK_S=1024 if ids.is_cuda else 4096)
    return sorted_slots, block_expert, total
