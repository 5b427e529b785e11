"""The training objective of the embedded model: masked (absorbing) diffusion over the FIM canvas.

For each example a noise level t ~ U(eps, 1) is drawn (stratified over the batch); every canvas
position is replaced by `<mask>` with probability t; the decoder, reading the encoder's cache of the
prompt, predicts the clean tokens and pays cross-entropy on the masked positions only.

Weighting: a plain mean over masked tokens, not the 1/t ELBO weight. The 1/t weight makes the loss
a likelihood bound, which we never report; its variance (t near eps weighs 1000x) is what a small
CPU run can least afford. The plain mean gives every masked token the same say, which is what the
sampler needs: good argmax predictions at every noise level. Padding after `<eos>` is an easy
target that would otherwise dominate short middles in long canvases, so it weighs `pad_weight`.

Self-conditioning as in DiffusionGemma: half of the batches first run the decoder without gradient
and feed its logits back (softmax @ E) to a second pass that is trained; the logits are divided by a
temperature in [0.4, 0.8] with `<mask>` excluded, which is what the mask sampler feeds back.

The encoder is also trained autoregressively on the prompt (next-token cross-entropy), which gives a
learning signal on every prompt token; and a Switch-style load-balancing term keeps the experts used.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diffill.kernels.moe_reference import router_probs


@dataclass
class Batch:
    prompt: torch.Tensor        # [B, P] left-padded
    prompt_pad: torch.Tensor    # [B, P] True at padding
    canvas: torch.Tensor        # [B, C] clean: middle, <eos>, <pad>...


def noise_levels(batch: int, generator: torch.Generator, eps: float = 1e-3) -> torch.Tensor:
    """t [B] in (eps, 1), stratified: one draw per 1/B slice, shuffled; on the generator's device."""
    dev = generator.device
    u = (torch.arange(batch, device=dev) + torch.rand(batch, generator=generator, device=dev)) / batch
    return eps + (1 - eps) * u[torch.randperm(batch, generator=generator, device=dev)]


def mask_canvas(canvas: torch.Tensor, t: torch.Tensor, mask_id: int, generator: torch.Generator):
    """Absorbing noise: each position becomes mask_id with probability t (at least one per row).
    Drawn on the generator's device. Returns (noisy canvas [B, C], masked [B, C] bool)."""
    b, c = canvas.shape
    dev = generator.device
    masked = torch.rand(b, c, generator=generator, device=dev) < t[:, None]
    none = ~masked.any(1)
    if none.any():
        pick = torch.randint(0, c, (b,), generator=generator, device=dev)
        masked[none, pick[none]] = True
    return torch.where(masked, torch.full_like(canvas, mask_id), canvas), masked


def diffusion_loss(logits: torch.Tensor, canvas: torch.Tensor, masked: torch.Tensor, pad_id: int,
                   pad_weight: float) -> torch.Tensor:
    """Weighted mean cross-entropy over masked canvas positions. logits [B, C, V] fp32."""
    ce = F.cross_entropy(logits.flatten(0, 1), canvas.flatten(), reduction="none").view_as(canvas)
    w = masked.float() * torch.where(canvas == pad_id, pad_weight, 1.0)
    return (ce * w).sum() / w.sum().clamp_min(1e-6)


def autoregressive_loss(logits: torch.Tensor, prompt: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the prompt's real positions. logits [B, P, V]."""
    valid = ~pad[:, :-1] & ~pad[:, 1:]
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1), prompt[:, 1:].flatten(), reduction="none")
    return (ce * valid.flatten()).sum() / valid.sum().clamp_min(1)


class RouterBalance:
    """Collects router inputs of every MoE block during a forward pass and returns the Switch
    load-balancing loss E * sum_e f_e * p_e (1.0 when balanced), averaged over layers."""

    def __init__(self, model):
        self.inputs, self.handles = {}, []
        for i, layer in enumerate(model.layers):
            self.handles.append(layer.register_forward_pre_hook(self._pre(i)))
            self.handles.append(layer.post_attention_layernorm.register_forward_hook(self._post(i)))
        self.model = model
        self.routed = []

    def _pre(self, i):
        def hook(module, args):
            self.inputs[i] = args[0]
        return hook

    def _post(self, i):
        def hook(module, args, out):
            self.routed.append((i, self.inputs.pop(i) + out))   # h: the residual the router reads
        return hook

    def loss(self) -> torch.Tensor:
        terms = []
        for i, h in self.routed:
            layer = self.model.layers[i]
            probs = router_probs(h.reshape(-1, h.shape[-1]).float(), layer.router.proj.weight,
                                 layer.router.scale, layer.eps)                   # [M, E]
            e = probs.shape[-1]
            top = probs.topk(layer.top_k, dim=-1).indices
            f = torch.zeros(e, device=probs.device).index_add_(0, top.flatten(), torch.ones(top.numel(), device=probs.device))
            f = f / top.numel()
            terms.append(e * (f.detach() * probs.mean(0)).sum())
        self.routed = []
        return torch.stack(terms).mean() if terms else torch.zeros(())

    def close(self):
        for h in self.handles:
            h.remove()


def training_loss(model, batch: Batch, generator: torch.Generator, mask_id: int, pad_id: int,
                  self_condition: bool, ar_weight: float = 0.5, pad_weight: float = 0.1,
                  balance: RouterBalance | None = None, balance_weight: float = 0.01) -> tuple[torch.Tensor, dict]:
    """One batch's loss and its parts (floats) for logging."""
    t = noise_levels(batch.canvas.shape[0], generator)
    noisy, masked = mask_canvas(batch.canvas, t, mask_id, generator)   # on the generator's device
    dev = model.device
    prompt, pad, canvas = batch.prompt.to(dev), batch.prompt_pad.to(dev), batch.canvas.to(dev)
    noisy, masked = noisy.to(dev), masked.to(dev)
    cache, hidden = model.encode(prompt, pad_mask=pad, return_hidden=True)
    sc = None
    if self_condition:
        with torch.no_grad():   # as the mask sampler feeds it back: logits / temperature, mask excluded
            sc = model.denoise(noisy, cache)
            sc[..., mask_id] = float("-inf")
            sc /= 0.4 + 0.4 * float(torch.rand(1, generator=generator, device=generator.device))
        if balance is not None:
            balance.routed = [r for r in balance.routed if r[1].requires_grad]
    logits = model.head(model.decode_hidden(noisy, cache, sc))
    loss_diff = diffusion_loss(logits, canvas, masked, pad_id, pad_weight)
    loss = loss_diff
    parts = {"diffusion": loss_diff.item()}
    if ar_weight > 0:
        loss_ar = autoregressive_loss(model.head(hidden), prompt, pad)
        loss = loss + ar_weight * loss_ar
        parts["ar"] = loss_ar.item()
    if balance is not None:
        loss_bal = balance.loss()
        loss = loss + balance_weight * loss_bal
        parts["balance"] = loss_bal.item()
    with torch.no_grad():
        real = masked & (canvas != pad_id)
        hits = (logits.argmax(-1) == canvas) & real
        parts["masked_acc"] = float(hits.sum() / real.sum().clamp_min(1))
    return loss, parts
