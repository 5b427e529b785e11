"""`diffill worker`: the process that holds the model (a private child, or a shared daemon with --socket)."""
import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="checkpoint folder or hub id (default: the embedded model); random:tiny or random:real "
                             "builds a random-weight model of that shape on the device (benchmarks)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default: auto)")
    parser.add_argument("--socket", default=None, metavar="PATH",
                        help="serve as a shared daemon on this Unix socket instead of stdin/stdout")
    parser.add_argument("--idle-timeout", type=float, default=900.0, metavar="SECONDS",
                        help="a shared worker exits after this long with no client connected (default: 900)")
    parser.add_argument("--detach", action="store_true", help="with --socket: fork into the background")
    parser.add_argument("--allow-download", action="store_true", help="fetch a hub id that is not cached locally")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--check", action="store_true", help="load the model, fill one hole, print a JSON report")
    parser.add_argument("--experts", choices=("auto", "none", "fp8", "int4"), default="auto",
                        help="the expert weights' form: auto = on CUDA the first of unquantised, fp8, int4 that fits "
                             "the free memory (elsewhere: as stored); none, fp8, int4: that form only")
    parser.add_argument("--nice", type=int, default=10, choices=range(0, 20), metavar="0-19",
                        help="run at this scheduling niceness, below the editor's (default: 10; 0: the same)")
    parser.add_argument("--fast-path", choices=("auto", "on", "off"), default="auto",
                        help="the fast parts (captured step, device sampler, fused head, Triton kernels), each "
                             "checked against its reference at load: auto = on CUDA, on = also elsewhere")
    parser.add_argument("--fast-off", default="", metavar="PARTS",
                        help="comma-separated fast parts to turn off: router, experts, graph, fused_head, "
                             "device_sampler, all")


def run(args) -> int:
    from diffill.model.worker.daemon import main

    return main(args)
