"""The `diffill` command line.

Each subcommand lives in its own module, which exposes `add_arguments(parser)` and `run(args) -> int`.
Modules are imported only when their subcommand runs, so `diffill serve` never imports torch.
"""
import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "demo": ("diffill.lsp.cli.demo", "complete the hole in the bundled example file and print it"),
    "complete": ("diffill.lsp.cli.complete", "fill in code at FILE:LINE:COL"),
    "generate": ("diffill.lsp.cli.generate", "raw continuation of a prompt"),
    "info": ("diffill.lsp.cli.info", "describe a checkpoint: parameters, layers, experts, memory"),
    "build-random": ("diffill.lsp.cli.build_random", "write a random-weight checkpoint in the real layout"),
    "serve": ("diffill.lsp.cli.serve", "run the language server (stdio, or --tcp PORT on loopback)"),
    "worker": ("diffill.lsp.cli.worker", "run the model worker (a shared per-user daemon with --socket PATH)"),
    "quantize": ("diffill.lsp.cli.quantize", "write an fp8 or int4 quantised copy of a checkpoint"),
    "train": ("diffill.lsp.cli.train", "train the embedded FIM diffusion model"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="diffill", description="Code completion by text diffusion.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        top.parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    module_name, help_ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("diffill."):
            print(f"diffill {name}: this command is not available in this build ({exc.name} is missing)", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"diffill {name}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130

