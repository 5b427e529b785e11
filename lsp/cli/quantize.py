"""`diffill quantize --model DIR --out DIR --to fp8|int4`: an fp8 or int4 copy of a checkpoint's experts."""
import sys


def add_arguments(p):
    from diffill.kernels import quant

    p.add_argument("--model", required=True, metavar="DIR", help="checkpoint directory to read")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (new or empty)")
    p.add_argument("--to", required=True, choices=quant.FORMATS, help="fp8 (e4m3, per-channel scales) or "
                   "int4 (group scales, weights only)")
    p.add_argument("--group-size", type=int, default=quant.DEFAULT_GROUP_SIZE, help="int4 group size (default 128)")
    p.add_argument("--device", default="cpu", help="where to quantise (cpu, cuda); files are always read and "
                   "written on the host")
    p.add_argument("--overwrite", action="store_true", help="replace the files in a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args) -> int:
    from diffill.model.engine.config import CheckpointError
    from diffill.model.engine.quantize import quantize_checkpoint

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        quantize_checkpoint(args.model, args.out, args.to, group_size=args.group_size, device=args.device,
                            overwrite=args.overwrite, log=log)
    except CheckpointError as exc:
        print(f"diffill quantize: {exc}", file=sys.stderr)
        return 1
    return 0


