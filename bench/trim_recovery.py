"""How often `trim` recovers the true middle from an over-generating model, against SAFIM's own
syntax-aware truncation on the same inputs.

Data: ../shared/evaldata (HumanEval-infilling single-line and multi-line; SAFIM block and control),
and a held-out set of our own (bench/heldout_holes.py: 300 line, 300 line-rest and 300 block holes
punched with seed 0 into the installed `hypothesis` package, which neither the embedded model's
training corpus nor the public sets hold). Each hole's true middle is followed by text a model
might run on with, cut at --overrun characters (a canvas does not hold a whole file):
  suffix_echo     the true suffix's own text (the model writes what is already below the cursor)
  junk            another problem's code (HumanEval: the whole program of problem (n+1) mod 164;
                  SAFIM: a problem half the list away in the same language whose program differs,
                  with its hole filled, on a new line; held-out: a definition from a file half the
                  list away)
  echo_then_junk  the suffix up to its second line of code, then that unrelated code as statements
                  at the indentation of the last line of code so far (a model that writes the code
                  below the cursor again and then goes on in the same block)
A case is recovered when the trimmed completion equals the middle modulo trailing whitespace
(and replaces nothing after the cursor). For HumanEval the filled program is also run against the
problem's tests, in fim_eval.py's sandbox (a fresh `python -I` with a timeout): `passed`.

    .venv/bin/python bench/trim_recovery.py                          # everything
    .venv/bin/python bench/trim_recovery.py --sample 4 --out-dir X   # every 4th case of each set

Writes bench/results/trim_recovery.json and .md (through record.py) unless --out-dir says otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from diffill.lsp.code.span import decide_span  # noqa: E402
from diffill.lsp.code.trim import trim  # noqa: E402

import safim_truncation as safim  # noqa: E402
from fim_eval import EVALDATA, passes, read_jsonl_gz  # noqa: E402
from record import RESULTS, percentile, write_results  # noqa: E402

SAFIM_LANG = {"cpp": "cpp", "java": "java", "python": "python", "csharp": "csharp"}
MODES = ("suffix_echo", "junk", "echo_then_junk")
ECHO_LINES = 2
HELDOUT_PER_KIND = 300
HELDOUT_BASELINE = {"line": "single_line", "line_rest": "single_line", "block": "block"}


# ---- cases --------------------------------------------------------------------------------


def humaneval_cases(evaldata: Path, name: str) -> list[dict]:
    rows = read_jsonl_gz(evaldata / "humaneval-infilling" / f"HumanEval-{name}Infilling.jsonl.gz")
    programs: dict[int, str] = {}
    for r in rows:
        programs.setdefault(int(r["task_id"].split("/")[2]), r["prompt"] + r["canonical_solution"] + r["suffix"])
    cases = []
    for r in rows:
        n = int(r["task_id"].split("/")[2])
        other = programs.get((n + 1) % 164) or next(v for k, v in programs.items() if k != n)
        cases.append({
            "id": r["task_id"], "language": "python", "prefix": r["prompt"], "suffix": r["suffix"],
            "middle": r["canonical_solution"], "junk": other,
            "test": r["test"], "entry_point": r["entry_point"],
        })
    return cases


def safim_cases(evaldata: Path, name: str) -> list[dict]:
    rows = read_jsonl_gz(evaldata / "safim" / f"{name}_completion.jsonl.gz")
    by_lang: dict[str, list[dict]] = {}
    for r in rows:
        by_lang.setdefault(r["lang"], []).append(r)
    cases = []
    for lang, group in by_lang.items():
        for i, r in enumerate(group):
            prefix, suffix = r["eval_prompt"].split("{{completion}}", 1)
            other = _unrelated(group, i)
            eol = "\r\n" if "\r\n" in r["eval_prompt"] else "\n"
            cases.append({
                "id": r["task_id"], "language": SAFIM_LANG[lang], "prefix": prefix, "suffix": suffix,
                "middle": r["ground_truth"],
                "junk": eol + other["eval_prompt"].replace("{{completion}}", other["ground_truth"]),
            })
    return cases


def _program_head(row: dict) -> str:
    return row["eval_prompt"][:300]


def _unrelated(group: list[dict], i: int) -> dict:
    """The first row from the middle of the list on whose program differs from row i's (SAFIM has
    several holes in one program)."""
    head = _program_head(group[i])
    for step in range(len(group) // 2, len(group)):
        other = group[(i + step) % len(group)]
        if _program_head(other) != head:
            return other
    return group[(i + 1) % len(group)]


def heldout_cases(per_kind: int = HELDOUT_PER_KIND) -> dict[str, list[dict]]:
    """The held-out holes (bench/heldout_holes.py) by kind: line, line_rest, block."""
    import heldout_holes

    holes = heldout_holes.holes("hypothesis", per_kind, seed=0)
    return {kind: [h for h in holes if h["kind"] == kind] for kind in heldout_holes.KINDS}


def overgenerate(case: dict, mode: str, overrun: int) -> str:
    if mode == "suffix_echo":
        tail = case["suffix"]
    elif mode == "junk":
        tail = case["junk"]
    else:
        echo = _first_code_lines(case["suffix"], ECHO_LINES)
        eol = "\r\n" if "\r\n" in case["prefix"][-2000:] + case["suffix"][:2000] else "\n"
        tail = echo + _as_statements(case["junk"], _level(case["prefix"] + case["middle"] + echo),
                                     at_line_start=(case["middle"] + echo).endswith("\n"), eol=eol)
    return case["middle"] + tail[:overrun]


def _first_code_lines(text: str, n: int) -> str:
    """`text` through the line break after its n-th line that is not blank (all of it when it has
    fewer); the rest of the cursor's line counts as a line."""
    at, found = 0, 0
    while found < n:
        nl = text.find("\n", at)
        line = text[at:] if nl < 0 else text[at:nl]
        found += bool(line.strip())
        if nl < 0:
            return text
        at = nl + 1
    return text[:at]


def _level(text: str) -> str:
    """The indentation of the last line of code in `text`."""
    for line in reversed(text[-4000:].split("\n")):
        if line.strip():
            return line[:len(line) - len(line.lstrip(" \t"))]
    return ""


def _as_statements(code: str, indent: str, at_line_start: bool, eol: str = "\n") -> str:
    """`code` re-indented so that its least indented lines sit at `indent`, on a new line."""
    lines = code.replace("\r\n", "\n").strip("\n").split("\n")
    common = min((len(x) - len(x.lstrip(" \t")) for x in lines if x.strip()), default=0)
    body = eol.join(indent + x[common:] if x.strip() else "" for x in lines)
    return body if at_line_start else eol + body


# ---- trimming -----------------------------------------------------------------------------


def ours(case: dict, completion: str) -> tuple[str, int]:
    span = decide_span(case["language"], case["prefix"], case["suffix"])
    out = trim(case["language"], case["prefix"], case["suffix"], completion, span)
    return out.text, out.replace_range[1][1]


def baseline(case: dict, completion: str, kind: str) -> tuple[str, int]:
    lang = case["language"]
    if kind == "control":
        return safim.truncate_control(lang, completion), 0
    if kind == "single_line":
        return safim.first_line(completion), 0
    return safim.truncate_block(lang, case["prefix"], case["suffix"], completion), 0


def recovered(case: dict, text: str, replaced: int) -> bool:
    return replaced == 0 and text.rstrip() == case["middle"].rstrip()


# ---- HumanEval execution ------------------------------------------------------------------


def humaneval_program(case: dict, text: str, replaced: int) -> str:
    return (case["prefix"] + text + case["suffix"][replaced:] + "\n" + case["test"] + "\n"
            + f"check({case['entry_point']})\n")


# ---- driver -------------------------------------------------------------------------------


def evaluate(cases: list[dict], kind: str, overrun: int, execute: bool, timeout: float, jobs: int = 2) -> dict:
    out: dict = {"cases": len(cases)}
    for who in ("ours", "safim"):
        if who == "safim" and kind == "block" and safim.parser(cases[0]["language"]) is None:
            print(f"trim_recovery: no SAFIM baseline for {cases[0]['language']}: its tree-sitter grammar"
                  " is not installed (pip install tree-sitter-c-sharp)", file=sys.stderr)
            out[who] = None
            continue
        rec = {m: 0 for m in MODES}
        ms: list[float] = []
        failures: list[dict] = []
        programs: dict[str, list[str]] = {m: [] for m in MODES}
        for case in cases:
            for mode in MODES:
                completion = overgenerate(case, mode, overrun)
                t0 = time.perf_counter()
                text, replaced = ours(case, completion) if who == "ours" else baseline(case, completion, kind)
                ms.append((time.perf_counter() - t0) * 1000)
                ok = recovered(case, text, replaced)
                rec[mode] += ok
                if not ok and len(failures) < 400 and who == "ours":
                    failures.append({"id": case["id"], "mode": mode, "got": text, "want": case["middle"]})
                if execute:
                    programs[mode].append(humaneval_program(case, text, replaced))
        n = max(len(cases), 1)
        out[who] = {m: rec[m] / n for m in MODES}
        if execute:
            unique = sorted({p for ps in programs.values() for p in ps})
            with ThreadPoolExecutor(jobs) as pool:
                verdict = dict(zip(unique, pool.map(lambda p: passes(p, timeout), unique)))
            out[who]["passed"] = {m: sum(verdict[p] for p in programs[m]) / n for m in MODES}
        out[who]["ms_per_trim"] = {"p50": percentile(ms, 0.5, 2), "p95": percentile(ms, 0.95, 2)}
        if who == "ours":
            out["_failures"] = failures
    return out


SET_LABELS = {"single_line": "HumanEval single-line", "multi_line": "HumanEval multi-line",
              "heldout/line": "held-out line", "heldout/line_rest": "held-out line-rest",
              "heldout/block": "held-out block"}


def markdown(results: dict, args) -> str:
    def pct(x):
        return "" if x is None else f"{100 * x:.1f}"

    rows = []
    for key, r in results.items():
        label = SET_LABELS.get(key) or "SAFIM " + key.replace("safim_", "").replace("/", " ")
        o, b = r["ours"], r["safim"] or {}
        if "passed" in o:
            passed = " | ".join(f"{pct(o['passed'][m])} / {pct(b.get('passed', {}).get(m))}" for m in MODES)
        else:
            passed = " | | "
        t = o["ms_per_trim"]
        ms = "n/a" if t["p50"] is None else f"{t['p50']} / {t['p95']}"
        rows.append(f"| {label} | {r['cases']} | {pct(o['suffix_echo'])} | {pct(b.get('suffix_echo'))} | "
                    f"{pct(o['echo_then_junk'])} | {pct(b.get('echo_then_junk'))} | "
                    f"{pct(o['junk'])} | {pct(b.get('junk'))} | {passed} | {ms} |")
    sample = f"every {args.sample}th case of each set" if args.sample > 1 else "all cases"
    return (
        f"Every hole ({sample}) of HumanEval-infilling (single-line, multi-line), SAFIM (block, control) and a held-out "
        "set (bench/heldout_holes.py: line, line-rest and block holes punched with seed 0 into the installed "
        "`hypothesis` package, which neither the embedded model's training corpus nor the public sets hold) gets a "
        f"simulated over-generating model: the true middle followed by {args.overrun} characters of\n"
        "- **suffix_echo**: the true suffix (the model writes what is already below the cursor),\n"
        "- **echo_then_junk**: the suffix up to its second line of code, then the junk below as statements at the "
        "indentation of the last line of code so far (the model repeats the code below and goes on in the same "
        "block), or\n"
        "- **junk**: unrelated code: the whole program of another HumanEval problem ((n+1) mod 164), for SAFIM "
        "another problem in the same language whose program differs, its hole filled, on a new line, for the "
        "held-out set a definition from another file.\n\n"
        "*Recovered* = the trimmed text equals the middle up to trailing whitespace and replaces nothing after the "
        "cursor. *Passed* = prefix + trimmed + suffix runs the problem's tests without error (fim_eval.py's sandbox: "
        f"a fresh `python -I`, {args.timeout:g} s limit). `ours` = `trim(language, prefix, suffix, completion, "
        "decide_span(language, prefix, suffix))`; `SAFIM` = its rules re-implemented in `bench/safim_truncation.py`: "
        "block holes drop trailing lines until the program parses and its node sequence is the hole-less one plus "
        "one insertion; control holes cut at the first unbalanced `)` (Python: first line); single-line holes keep "
        "the first line. C# has no grammar in diffill: the fallback (indentation and bracket) rules trim it.\n\n"
        "| set | cases | echo: ours | echo: SAFIM | echo then junk: ours | echo then junk: SAFIM | junk: ours | "
        "junk: SAFIM | passed echo (ours / SAFIM) | passed junk (ours / SAFIM) | "
        "passed echo then junk (ours / SAFIM) | ms per trim, p50 / p95 (ours) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\n(percent of cases; ms per trim includes `decide_span`.)\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evaldata", type=Path, default=EVALDATA)
    ap.add_argument("--sample", type=int, default=1, help="take every Nth case of each set (deterministic)")
    ap.add_argument("--overrun", type=int, default=400, help="characters of over-generation after the middle")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per HumanEval program")
    ap.add_argument("--jobs", type=int, default=2, help="HumanEval programs run at once")
    ap.add_argument("--no-exec", action="store_true", help="skip running HumanEval tests")
    ap.add_argument("--sets", default="single_line,multi_line,safim_block,safim_control,heldout")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--failures", type=Path, default=None, help="write unrecovered cases here (JSON)")
    args = ap.parse_args(argv)
    if not args.evaldata.is_dir():
        print(f"trim_recovery: no evaluation data at {args.evaldata}; pass --evaldata DIR", file=sys.stderr)
        return 2

    results: dict = {}
    failures: dict = {}
    started = time.time()
    for name in args.sets.split(","):
        if name == "heldout":
            for kind, group in heldout_cases().items():
                t0 = time.time()
                res = evaluate(group[:: args.sample], HELDOUT_BASELINE[kind], args.overrun, execute=False,
                               timeout=args.timeout, jobs=args.jobs)
                failures[f"heldout/{kind}"] = res.pop("_failures")
                results[f"heldout/{kind}"] = res
                print(f"heldout/{kind}: {json.dumps(res)}  ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
            continue
        if name in ("single_line", "multi_line"):
            cases = humaneval_cases(args.evaldata, "SingleLine" if name == "single_line" else "MultiLine")
            groups = {"python": cases[:: args.sample]}
            kind = name
        else:
            kind = name.split("_")[1]
            groups = {}
            for c in safim_cases(args.evaldata, kind):
                groups.setdefault(c["language"], []).append(c)
            groups = {k: v[:: args.sample] for k, v in sorted(groups.items())}
        for lang, group in groups.items():
            t0 = time.time()
            res = evaluate(group, kind, args.overrun, execute=name in ("single_line", "multi_line") and not args.no_exec,
                           timeout=args.timeout, jobs=args.jobs)
            failures[f"{name}/{lang}"] = res.pop("_failures")
            key = name if name in ("single_line", "multi_line") else f"{name}/{lang}"
            results[key] = res
            print(f"{key}: {json.dumps(res)}  ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    summary: dict = {key: {m: results[key]["ours"][m] for m in MODES} for key in ("single_line", "multi_line")
                     if key in results}
    passed = {k: results[k]["ours"]["passed"] for k in ("single_line", "multi_line")
              if k in results and "passed" in results[k]["ours"]}
    if passed:
        summary["passed"] = passed
    summary["lowest"] = {m: min(((round(r["ours"][m], 4), k) for k, r in results.items()), default=None)
                         for m in MODES}
    data = {**summary, "details": results,
            "settings": {"sample": args.sample, "overrun_chars": args.overrun, "timeout_s": args.timeout},
            "seconds": round(time.time() - started)}
    write_results("trim_recovery", data, markdown(results, args),
                  "Trim recovery: `diffill.lsp.code.trim` against SAFIM's syntax-aware truncation",
                  _recorded_args(argv if argv is not None else sys.argv[1:]), out_dir=args.out_dir)
    if args.failures:
        args.failures.write_text(json.dumps(failures, indent=1))
    print(json.dumps(summary, indent=2))
    return 0


def _recorded_args(argv: list[str]) -> list[str]:
    """The arguments that shape the results (where files are written does not)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--out-dir", "--failures", "--evaldata"):
            skip = True
            continue
        if arg.startswith(("--out-dir=", "--failures=", "--evaldata=")):
            continue
        out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(main())
