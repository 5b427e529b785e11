"""What every benchmark writes into bench/results/: its figures with where they came from.

    from record import percentile, write_results
    write_results("fim_eval", data, markdown)   # bench/results/fim_eval.json and .md

Each file carries the exact command, the commit (and whether the tree had changes), the machine and
the date, so anyone can tell what produced it and run it again. Percentiles come only from at least
MIN_SAMPLES samples; fewer give None.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MIN_SAMPLES = 30


def percentile(samples, q: float, digits: int = 1) -> float | None:
    """The q-quantile (nearest rank) of `samples`, or None with fewer than MIN_SAMPLES of them."""
    xs = sorted(samples)
    if len(xs) < MIN_SAMPLES:
        return None
    i = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return round(xs[i], digits)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _checkout() -> str:
    """The commit checked out, with "+changes" when tracked files other than results differ from it
    (one benchmark's new figures are not a change to the code the next one runs)."""
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return _git("rev-parse", "HEAD") + ("+changes" if changed else "")


_STARTED_AT = _checkout()  # the code that runs is the code at import, before any long work


def provenance(argv: list[str] | None = None) -> dict:
    """Command, commit, machine and date of this run. The commit is the one checked out when the
    script started; when the checkout changed while it ran, `commit_at_end` says to what."""
    script = Path(sys.argv[0]).resolve()
    rel = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script.name
    args = sys.argv[1:] if argv is None else argv
    machine = {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
               "system": f"{platform.system()} {platform.release()}", "load_average": [round(x, 2) for x in os.getloadavg()]}
    torch = sys.modules.get("torch")
    if torch is not None:
        machine["torch"] = torch.__version__
        machine["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    prov = {"command": " ".join(["python", str(rel), *map(shlex.quote, args)]), "commit": _STARTED_AT,
            "machine": machine, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    at_end = _checkout()
    if at_end != _STARTED_AT:
        prov["commit_at_end"] = at_end
    return prov


def header(prov: dict, title: str) -> str:
    m = prov["machine"]
    where = f"{m['cpu']}, {m['cores']} cores" + (f", {m['gpu']}" if m.get("gpu") else ", no GPU")
    if m.get("torch"):
        where += f", torch {m['torch']} ({m['threads']} threads)"
    moved = f" (the checkout was at `{prov['commit_at_end']}` when it ended)" if prov.get("commit_at_end") else ""
    return (f"# {title}\n\nWritten by `{prov['command']}` at commit `{prov['commit']}`{moved} on {prov['date']}.\n"
            f"Machine: {where}; load average {m['load_average']} at the end.\n\n")


def write_results(name: str, data: dict, markdown: str, title: str, argv: list[str] | None = None,
                  out_dir: Path = RESULTS) -> tuple[Path, Path]:
    """Write `name`.json (data + provenance) and `name`.md (a provenance header + `markdown`)."""
    prov = provenance(argv)
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    js.write_text(json.dumps({"provenance": prov, **data}, indent=1) + "\n")
    md.write_text(header(prov, title) + markdown.rstrip() + "\n")
    return js, md
