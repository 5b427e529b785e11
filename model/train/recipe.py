"""The embedded model's GPU recipe, one step per command (bench/gpu_train.sh runs them in order):

    python -m diffill.model.train.recipe corpus --work W [--evaldata DIR] [--max-files N]
    python -m diffill.model.train.recipe pretokenize --work W [--workers N]
    python -m diffill.model.train.recipe train --work W --minutes 6 [--size gpu] [--device cuda]
    python -m diffill.model.train.recipe pack --work W --out OUTDIR

`corpus` collects this machine's standard library and permissively licensed site-packages
(`corpus.build`) and drops files sharing a 13-gram with the evaluation data (`overlap.check`). Without
evaluation data nothing can be checked: the corpus is kept for training (its figures still say what
the recipe does on this machine), decontamination.json says it did not run, and `pack` refuses to
export the weights. The tokenizer is the embedded model's (model/embedded/tokenizer.json), so the
prompt format and special tokens stay those the pipeline knows.
`pretokenize` writes W/pretokenized.pt (`pretokenized.build`). `train` loads it onto the device,
trains for the budget (`budget.train_for`) and exports W/export in model/embedded's layout
(`loop.export`, bf16). `pack` writes OUTDIR/embedded-gpu.tar.gz (the export's files under embedded/).
"""
import argparse
import json
import sys
import tarfile
import time
from pathlib import Path

EMBEDDED = Path(__file__).resolve().parent.parent / "embedded"
ARCHIVE = "embedded-gpu.tar.gz"
MAX_FILE_BYTES = 16_000_000


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def corpus_paths(work: Path) -> dict:
    d = work / "corpus"
    return {"dir": d, "raw": d / "files.jsonl", "clean": d / "clean.jsonl", "report": d / "decontamination.json"}


# ---------------------------------------------------------------- steps

def step_corpus(args) -> int:
    from diffill.model.train import corpus
    from diffill.model.train.overlap import check

    p = corpus_paths(args.work)
    t0 = time.time()
    stats = corpus.build(p["dir"], include_packages=not args.stdlib_only, max_files=args.max_files, workers=args.workers)
    log(f"corpus: {stats['kept_files']} files, {stats['kept_bytes'] / 1e6:.1f} MB "
        f"({stats['exact_duplicates']} exact and {stats['near_duplicates']} near duplicates dropped, "
        f"{len(stats['skipped_distributions'])} distributions refused by license) in {time.time() - t0:.0f} s")
    evaldata = args.evaldata
    if evaldata is not None and (evaldata / "humaneval-infilling").is_dir():
        report = check(p["raw"], evaldata, p["clean"])
        report = {"ran": True, "against": str(evaldata.name), **report}
        log(f"decontamination against {evaldata}: dropped {report['corpus_files_dropped']} of "
            f"{report['corpus_files']} files; {report['eval_ngrams_found_in_corpus']} of {report['eval_ngrams']} "
            f"evaluation 13-grams remain")
    else:
        p["raw"].replace(p["clean"])
        report = {"ran": False, "reason": f"no evaluation data at {evaldata}: nothing to check the corpus against; "
                  "the model is trained but not exported"}
        log(f"decontamination NOT run: {report['reason']}")
    p["report"].write_text(json.dumps(report, indent=1) + "\n")
    return 0


def step_pretokenize(args) -> int:
    from diffill.model.train import pretokenized

    t0 = time.time()
    pt = pretokenized.build(corpus_paths(args.work)["clean"], args.tokenizer, workers=args.workers, seed=args.seed,
                            log=log)
    pt.save(args.work / "pretokenized.pt")
    log(f"pre-tokenized in {time.time() - t0:.0f} s ({pt.files} files, {len(pt.tokens):,} tokens, "
        f"{int(pt.file_held.sum())} held out)")
    return 0


def step_train(args) -> int:
    import torch

    from diffill.model.train.budget import train_for
    from diffill.model.train.device_batches import DeviceBatches
    from diffill.model.train.fim_data import FimExamples
    from diffill.model.train.loop import export, make_optimizer, new_model
    from diffill.model.train.pretokenized import PreTokenized

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    pt = PreTokenized.load(args.work / "pretokenized.pt").to(device)
    model = new_model(args.size, args.tokenizer, args.seed).to(device).train()
    opt = make_optimizer(model, args.lr, args.weight_decay)
    fim = FimExamples(model.tokenizer._tok, args.prefix_tokens, args.suffix_tokens)
    batches = DeviceBatches(pt, fim, args.seed, args.canvas_lengths)
    params = sum(p.numel() for p in model.parameters())
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    log(f"training {args.size}: {params / 1e6:.2f}M parameters on {where}, batch {args.batch_size}, "
        f"{len(pt.tokens):,} corpus tokens on the device, budget {args.minutes} min")
    record = train_for(model, opt, batches, args, log)
    history = record.pop("history")
    (args.work / "history.json").write_text(json.dumps(history) + "\n")
    meta = {"size": args.size, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
            "ar_weight": args.ar_weight, "pad_weight": args.pad_weight, "prefix_tokens": args.prefix_tokens,
            "suffix_tokens": args.suffix_tokens, "canvas_lengths": args.canvas_lengths, "warmup": args.warmup,
            "decay_fraction": args.decay_fraction, "params": params, **record,
            "recipe": {"script": "bench/gpu_train.sh", "minutes": args.minutes, "device": where,
                       "data": "pre-tokenized on the device, holes drawn there (model/train/device_batches.py)"}}
    p = corpus_paths(args.work)
    export(model.eval(), args.work / "export", meta, p["clean"], args.tokenizer)
    log(f"exported {args.work / 'export'}: " + ", ".join(f"{f.name} {f.stat().st_size / 1e6:.2f} MB"
                                                         for f in sorted((args.work / "export").iterdir())))
    return 0


def step_pack(args) -> int:
    p = corpus_paths(args.work)
    report = json.loads(p["report"].read_text())
    if not report.get("ran"):
        log(f"not exported: {report['reason']}")
        return 3
    export = args.work / "export"
    args.out.mkdir(parents=True, exist_ok=True)
    archive = args.out / ARCHIVE
    with tarfile.open(archive, "w:gz", compresslevel=9) as tar:
        for f in sorted(export.iterdir()):
            tar.add(f, arcname=f"embedded/{f.name}")
    size = archive.stat().st_size
    log(f"{archive.name}: {size / 1e6:.2f} MB")
    if size >= MAX_FILE_BYTES:
        archive.unlink()
        log(f"the archive is {size / 1e6:.2f} MB, over the {MAX_FILE_BYTES / 1e6:.0f} MB limit: removed")
        return 4
    return 0


# ---------------------------------------------------------------- command line

def main(argv=None) -> int:
    from diffill.model.train.fim_data import CANVAS_LENGTHS
    from diffill.model.train.loop import SIZES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("corpus", "pretokenize", "train", "pack"))
    ap.add_argument("--work", type=Path, required=True, help="folder for the corpus, tensors and export")
    ap.add_argument("--out", type=Path, help="pack: where the archive goes")
    ap.add_argument("--evaldata", type=Path, default=None, help="corpus: evaluation data to decontaminate against")
    ap.add_argument("--max-files", type=int, default=None, help="corpus: the first N kept files (rehearsals)")
    ap.add_argument("--stdlib-only", action="store_true", help="corpus: the standard library only (rehearsals)")
    ap.add_argument("--tokenizer", type=Path, default=EMBEDDED / "tokenizer.json")
    ap.add_argument("--workers", type=int, default=1, help="corpus, pretokenize: processes")
    ap.add_argument("--size", choices=sorted(SIZES), default="gpu")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=6.0, help="train: wall-clock budget of the training loop")
    ap.add_argument("--steps", type=int, default=None, help="train: a fixed total instead of the budget's")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--decay-fraction", type=float, default=0.25)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ar-weight", type=float, default=0.5)
    ap.add_argument("--pad-weight", type=float, default=0.1)
    ap.add_argument("--prefix-tokens", type=int, default=192)
    ap.add_argument("--suffix-tokens", type=int, default=64)
    ap.add_argument("--canvas-lengths", type=lambda s: [int(x) for x in s.split(",")], default=list(CANVAS_LENGTHS))
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-batches", type=int, default=4)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    return {"corpus": step_corpus, "pretokenize": step_pretokenize, "train": step_train, "pack": step_pack}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
