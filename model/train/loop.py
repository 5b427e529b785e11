"""`diffill train`: train the embedded FIM diffusion model (CPU or CUDA), reproducibly and resumably.

    diffill train --size small --corpus .cache/corpus/clean.jsonl --tokenizer .cache/tokenizer.json \
        --run runs/small --steps 20000 --export model/embedded

Missing inputs are built first: the corpus (`corpus.py`: collect, deduplicate; `overlap.py`: drop
files that share a 13-gram with --evaldata, reported in decontamination.json beside the corpus) and
the tokenizer (`bpe.py`). --export writes the checkpoint with its provenance: training_info.json,
corpus_manifest.json (package, version, license, files and tokens of the corpus) and the
decontamination report.

Everything random in step n (which files, which holes, canvas length, noise) is drawn from
generators seeded by (seed, n), so a run is a function of its seed and resuming needs only the
weights, the optimizer state and the step, which are saved (safetensors + JSON) every --save-every
steps and on Ctrl-C. Run the same command again to resume.
"""
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diffill.model.engine.builder import build_model, make_config
from diffill.model.engine.checkpoint import save_checkpoint
from diffill.model.engine.config import GenerationSettings
from diffill.model.train.corpus import HOLDOUT, PACKAGE_ALPHA, is_held_out, write_manifest
from diffill.model.train.fim_data import FimExamples, collate, load_texts
from diffill.model.train.objective import Batch, RouterBalance, training_loss
from diffill.model.engine.tokenizer import Tokenizer


def _text_config(hidden, layers, experts, moe, pattern, window=256, head_dim=64, kv=1):
    kinds = (pattern * layers)[:layers]
    kinds[-1] = "full_attention"
    return dict(vocab_size=8192, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=hidden // head_dim, num_key_value_heads=kv, head_dim=head_dim,
                layer_types=kinds, sliding_window=window, num_experts=experts, top_k_experts=2,
                moe_intermediate_size=moe,
                per_layer_config={str(i): {"head_dim": head_dim, "num_key_value_heads": kv}
                                  for i, k in enumerate(kinds) if k == "full_attention"})


S, F = "sliding_attention", "full_attention"
SIZES = {
    "tiny": _text_config(64, 2, 2, 64, [S, F], head_dim=32),          # for tests
    "small": _text_config(192, 6, 4, 192, [S, S, F]),
    "base": _text_config(256, 6, 8, 256, [S, S, F]),
    # bench/gpu_train.sh: the most parameters whose bf16 weights stay one safetensors file under 15 MB
    "gpu": _text_config(192, 8, 4, 160, [S, S, F]),
}


# ---------------------------------------------------------------- data

class Corpus:
    """Training and held-out texts; a package is drawn with probability proportional to
    (its bytes)^alpha, then a file in it proportional to its length."""

    def __init__(self, path: Path, alpha: float = PACKAGE_ALPHA, holdout: int = HOLDOUT):
        self.train, self.held = {}, []
        for package, text in load_texts(path):
            if is_held_out(text, holdout):
                self.held.append(text)
            else:
                self.train.setdefault(package, []).append(text)
        self.packages = sorted(self.train)
        sizes = [sum(map(len, self.train[p])) for p in self.packages]
        self.package_weights = [s ** alpha for s in sizes]
        self.file_weights = {p: [len(t) for t in self.train[p]] for p in self.packages}

    def draw(self, rng: random.Random) -> str:
        p = rng.choices(self.packages, weights=self.package_weights)[0]
        return rng.choices(self.train[p], weights=self.file_weights[p])[0]


def make_batch(corpus: Corpus, fim: FimExamples, seed: int, step: int, batch_size: int, canvas_lengths,
               held_out: bool = False) -> Batch:
    rng = random.Random(f"{seed}:{step}:{held_out}")
    c = rng.choice(canvas_lengths)
    texts = [rng.choice(corpus.held) if held_out else corpus.draw(rng) for _ in range(batch_size)]
    return Batch(*collate([fim.example(t, c, rng) for t in texts], fim.pad))


# ---------------------------------------------------------------- state

def lr_at(step: int, total: int, peak: float, warmup: int, decay_fraction: float = 0.2, floor: float = 0.1) -> float:
    """Warmup, then constant, then a linear decay to floor * peak over the last decay_fraction of the
    steps (warmup-stable-decay): a run can be extended by raising --steps before its decay starts."""
    if step < warmup:
        return peak * (step + 1) / warmup
    decay_start = int(total * (1 - decay_fraction))
    if step < decay_start:
        return peak
    progress = min(1.0, (step - decay_start) / max(1, total - decay_start))
    return peak * (1 - (1 - floor) * progress)


def save_state(run: Path, model, opt, step: int, meta: dict):
    """Weights, AdamW moments and the step, atomically (safetensors + JSON)."""
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {f"model.{n}": p.detach().cpu().contiguous() for n, p in model.named_parameters()}
    for p, st in opt.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"{key}.{names[id(p)]}"] = st[key].cpu().contiguous()
    opt_steps = {names[id(p)]: float(st["step"]) for p, st in opt.state.items()}
    tmp = run / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, run / "state.safetensors")
    (run / "state.json.tmp").write_text(json.dumps(dict(meta, step=step, opt_steps=opt_steps), indent=1) + "\n")
    os.replace(run / "state.json.tmp", run / "state.json")


def load_state(run: Path, model, opt) -> dict:
    meta = json.loads((run / "state.json").read_text())
    tensors = load_file(str(run / "state.safetensors"))
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(tensors[f"model.{n}"])
    for n, p in model.named_parameters():
        if f"exp_avg.{n}" in tensors:
            opt.state[p] = {"step": torch.tensor(meta["opt_steps"][n]),
                            "exp_avg": tensors[f"exp_avg.{n}"].to(p.device),
                            "exp_avg_sq": tensors[f"exp_avg_sq.{n}"].to(p.device)}
    return meta


@torch.no_grad()
def scale_for_training_(model, layers: int):
    """The norms of a model about to be trained from scratch (init_weights_ gives the rest: matrices
    N(0, 0.02), the embedding N(0, 1/sqrt(H)) so that, scaled by sqrt(H), tokens enter at unit RMS,
    norms 1).

    The post-attention and post-feed-forward norms start at 1/sqrt(2 * layers): every branch output
    is RMS-normalised before it joins the residual, so these weights (not the output projections)
    set how loud a block is, and starting them low keeps the residual close to the token embeddings
    at first. q and k norms start at D^-1/4: the attention scaling is 1.0 (no 1/sqrt(D)), so this
    gives q.k unit variance at first instead of one-hot softmaxes.
    """
    for layer in model.layers:
        d = layer.self_attn.spec.head_dim
        layer.self_attn.q_norm.weight.fill_(d ** -0.25)
        layer.self_attn.k_norm.weight.fill_(d ** -0.25)
        layer.post_attention_layernorm.weight.fill_((2 * layers) ** -0.5)
        layer.post_feedforward_layernorm.weight.fill_((2 * layers) ** -0.5)


def new_model(size: str, tokenizer_file: Path, seed: int, canvas_length: int = 256):
    from tokenizers import Tokenizer as HF
    hf = HF.from_file(str(tokenizer_file))
    text = dict(SIZES[size], vocab_size=max(SIZES[size]["vocab_size"], hf.get_vocab_size()))
    tok = Tokenizer(hf)
    text.update(pad_token_id=tok.pad_id, eos_token_id=tok.eos_ids[0], bos_token_id=None)
    config = make_config(text, canvas_length=canvas_length, noise="mask", prompt_format="fim")
    model = build_model(config, seed=seed, embed_std=text["hidden_size"] ** -0.5, jitter=0.0)
    scale_for_training_(model, text["num_hidden_layers"])
    model.tokenizer = tok
    model.generation = GenerationSettings(eos_token_id=tok.eos_ids, max_denoising_steps=32)
    return model


def export(model, out: Path, meta: dict, corpus: Path, tokenizer_file: Path, dtype=torch.bfloat16,
           max_shard_bytes: int = 15_000_000) -> Path:
    """The HF-layout checkpoint (bf16, shards under 16 MB) plus training_info.json, the corpus
    manifest and, when the corpus was built here, its decontamination report. config.json gets
    `diffill_context_tokens`: the prefix + suffix budget the model was trained with, and
    `diffill_languages`: the corpus is Python source only."""
    model.config.raw["diffill_context_tokens"] = meta["prefix_tokens"] + meta["suffix_tokens"]
    model.config.raw["diffill_languages"] = ["python"]
    save_checkpoint(model, out, max_shard_bytes=max_shard_bytes, dtype=dtype)
    (out / "training_info.json").write_text(json.dumps(meta, indent=1) + "\n")
    write_manifest(corpus, tokenizer_file, out / "corpus_manifest.json")
    report = decontamination_report(corpus)
    if report.is_file():
        shutil.copyfile(report, out / report.name)
    return out


def decontamination_report(corpus: Path) -> Path:
    """Where `prepare` writes the report of the corpus it decontaminated."""
    return corpus.parent / "decontamination.json"


# ---------------------------------------------------------------- inputs

def prepare(args) -> None:
    """Build the decontaminated corpus and the tokenizer when they are missing."""
    if not args.corpus.is_file():
        from diffill.model.train import corpus as corpus_mod
        from diffill.model.train.overlap import check
        if not (args.evaldata / "humaneval-infilling").is_dir():
            raise SystemExit(f"diffill train: {args.corpus} is missing and building it needs the evaluation data "
                             f"for decontamination; pass --evaldata (looked in {args.evaldata})")
        raw = args.corpus.parent / "files.jsonl"
        print(f"collecting the corpus into {raw}", file=sys.stderr)
        corpus_mod.build(raw.parent)
        report = check(raw, args.evaldata, args.corpus)
        decontamination_report(args.corpus).write_text(json.dumps(report, indent=1) + "\n")
        print(f"decontamination: dropped {report['corpus_files_dropped']} of {report['corpus_files']} files",
              file=sys.stderr)
    if not args.tokenizer.is_file():
        from diffill.model.engine.bpe import sample_texts, train_tokenizer
        print(f"training the tokenizer into {args.tokenizer}", file=sys.stderr)
        args.tokenizer.parent.mkdir(parents=True, exist_ok=True)
        train_tokenizer(sample_texts(args.corpus, 40_000_000, args.seed), 8192).save(str(args.tokenizer))


# ---------------------------------------------------------------- loop

def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over every weight (the model comes from the engine with gradients off), decay on matrices only."""
    for p in model.parameters():
        p.requires_grad_(True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))


def step_seed(seed: int, step: int) -> int:
    """The seed of step n's noise generator."""
    return seed * 1_000_003 + step


def train_step(model, opt, batch: Batch, g: torch.Generator, lr: float, args, balance) -> tuple:
    """One optimizer step at learning rate lr; the noise and the self-conditioning coin come from g.
    args: ar_weight, pad_weight, bf16. Returns (loss, parts)."""
    for group in opt.param_groups:
        group["lr"] = lr
    mask_id, pad_id = model.tokenizer.mask_id, model.tokenizer.pad_id
    self_cond = bool(torch.rand(1, generator=g, device=g.device) < 0.5)
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=args.bf16):
        loss, parts = training_loss(model, batch, g, mask_id, pad_id, self_cond, args.ar_weight,
                                    args.pad_weight, balance)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, parts


def progress_line(step: int, total: int | None, loss: float, avg: dict, lr: float, tps: float, eta_s: float) -> str:
    """One log line; total None: not known yet (a budgeted run's warm-up)."""
    bar = "#" * int(30 * step / total) if total else ""
    return (f"[{bar:<30}] step {step}/{total or '?'} loss {loss:.3f} " + " ".join(f"{k} {v:.3f}" for k, v in avg.items())
            + f" lr {lr:.2e} {tps:.0f} tok/s ETA {_fmt_time(eta_s)}")


def held_out_loss(model, batch_of, batches: int = 4, device: str = "cpu") -> float:
    """Mean diffusion loss (no self-conditioning) over batch_of(0..batches-1), each with noise from a
    generator seeded 10_000 + i: the same figure at every evaluation of a run."""
    model.eval()
    total = 0.0
    mask_id, pad_id = model.tokenizer.mask_id, model.tokenizer.pad_id
    with torch.no_grad():
        for i in range(batches):
            g = torch.Generator(device=device).manual_seed(10_000 + i)
            _, parts = training_loss(model, batch_of(i), g, mask_id, pad_id, self_condition=False, ar_weight=0)
            total += parts["diffusion"]
    model.train()
    return total / batches


def evaluate(model, corpus, fim, args, batches: int = 4) -> float:
    return held_out_loss(model, lambda i: make_batch(corpus, fim, 12345, i, args.batch_size, args.canvas_lengths,
                                                     held_out=True), batches)


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def train(args) -> int:
    """Train (or resume) with the options of `diffill train`; returns an exit status."""
    # Ctrl-C and SIGTERM save the state before leaving (also when started in the background,
    # where SIGINT is otherwise ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.run.mkdir(parents=True, exist_ok=True)
    prepare(args)
    model = new_model(args.size, args.tokenizer, args.seed).to(args.device).train()
    opt = make_optimizer(model, args.lr, args.weight_decay)
    meta = {"size": args.size, "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size,
            "lr": args.lr, "ar_weight": args.ar_weight, "pad_weight": args.pad_weight,
            "prefix_tokens": args.prefix_tokens, "suffix_tokens": args.suffix_tokens,
            "canvas_lengths": args.canvas_lengths, "warmup": args.warmup, "decay_fraction": args.decay_fraction,
            "tokens": 0, "canvas_tokens": 0, "history": []}
    step = 0
    if (args.run / "state.json").is_file():
        meta = load_state(args.run, model, opt)
        step = meta.pop("step")
        meta.pop("opt_steps", None)
        if meta.get("steps") != args.steps:  # the total may be raised or lowered before the decay starts
            meta.setdefault("schedule_changes", []).append({"at_step": step, "steps": args.steps})
        meta.update(steps=args.steps, warmup=args.warmup, decay_fraction=args.decay_fraction)
        print(f"resuming {args.run} at step {step}", file=sys.stderr)
    params = sum(p.numel() for p in model.parameters())
    meta["params"] = params
    corpus = Corpus(args.corpus)
    fim = FimExamples(model.tokenizer._tok, args.prefix_tokens, args.suffix_tokens)
    balance = RouterBalance(model)
    stop = min(args.steps, args.stop_at or args.steps)
    print(f"training {args.size}: {params / 1e6:.2f}M parameters, {len(corpus.packages)} packages, "
          f"steps {step}..{stop} of {args.steps}, device {args.device}, threads {torch.get_num_threads()}",
          file=sys.stderr)
    t0, tokens0, start_step, window = time.time(), meta["tokens"], step, []
    try:
        while step < stop:
            batch = make_batch(corpus, fim, args.seed, step, args.batch_size, args.canvas_lengths)
            g = torch.Generator().manual_seed(step_seed(args.seed, step))
            loss, parts = train_step(model, opt, batch, g, lr_at(step, args.steps, args.lr, args.warmup, args.decay_fraction),
                                     args, balance)
            step += 1
            meta["tokens"] += int((~batch.prompt_pad).sum()) + batch.canvas.numel()
            meta["canvas_tokens"] += batch.canvas.numel()
            window.append(parts)
            if step % args.log_every == 0 or step == stop:
                elapsed = time.time() - t0
                tps = (meta["tokens"] - tokens0) / max(elapsed, 1e-6)
                avg = {k: sum(w.get(k, 0.0) for w in window) / len(window) for k in window[0]}
                window = []
                eta_s = (stop - step) * elapsed / max(1, step - start_step)
                print(progress_line(step, args.steps, loss.item(), avg, opt.param_groups[0]['lr'], tps, eta_s),
                      file=sys.stderr, flush=True)
                meta["history"].append({"step": step, **{k: round(v, 4) for k, v in avg.items()},
                                        "tokens": meta["tokens"], "elapsed_s": round(elapsed, 1)})
            if corpus.held and (step % args.eval_every == 0 or step == stop):
                val = evaluate(model, corpus, fim, args)
                meta["history"].append({"step": step, "val_diffusion": round(val, 4)})
                print(f"step {step}: held-out diffusion loss {val:.4f}", file=sys.stderr, flush=True)
            if step % args.save_every == 0 or step == stop:
                save_state(args.run, model, opt, step, meta)
    except KeyboardInterrupt:
        save_state(args.run, model, opt, step, meta)
        print(f"interrupted: saved step {step} to {args.run}", file=sys.stderr)
        return 130
    finally:
        balance.close()
    if args.export is not None:
        info = {k: v for k, v in meta.items() if k != "history"}
        info.update(step=step, final=step >= args.steps)
        export(model.eval(), args.export, info, args.corpus, args.tokenizer)
        print(f"exported to {args.export}", file=sys.stderr)
    return 0
