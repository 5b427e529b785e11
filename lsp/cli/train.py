"""`diffill train`: train (or resume training) the embedded FIM diffusion model."""
import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser):
    from diffill.model.train.fim_data import CANVAS_LENGTHS
    from diffill.model.train.loop import SIZES

    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--corpus", type=Path, default=Path(".cache/corpus/clean.jsonl"))
    p.add_argument("--tokenizer", type=Path, default=Path(".cache/tokenizer.json"))
    p.add_argument("--evaldata", type=Path, default=Path("../shared/evaldata"),
                   help="evaluation data kept out of the corpus (needed only to build the corpus)")
    p.add_argument("--run", type=Path, required=True, help="folder for the resumable training state")
    p.add_argument("--export", type=Path, default=None, help="write the finished model here (HF layout)")
    p.add_argument("--steps", type=int, default=20000, help="total steps (sets the schedule)")
    p.add_argument("--stop-at", type=int, default=None, help="stop (and save) at this step; resume later")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--decay-fraction", type=float, default=0.2, help="share of the steps with a decaying rate")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ar-weight", type=float, default=0.5, help="weight of the encoder's next-token loss (0: off)")
    p.add_argument("--pad-weight", type=float, default=0.1)
    p.add_argument("--prefix-tokens", type=int, default=192)
    p.add_argument("--suffix-tokens", type=int, default=64)
    p.add_argument("--canvas-lengths", type=lambda s: [int(x) for x in s.split(",")], default=list(CANVAS_LENGTHS))
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for the matrix products (fp32 weights and optimizer); 1.6x faster on AVX-512 CPUs")
    p.add_argument("--device", default=None,
                   help="cpu or cuda (default: cuda when there is one)")




def run(args) -> int:
    from diffill.model.train.loop import train

    return train(args)
