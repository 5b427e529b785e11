"""Training for a fixed wall-clock budget, with batches made on the device (`device_batches.py`).

The learning rate follows `loop.lr_at` (warm-up, constant, linear decay). Its total number of steps
is not known in advance: the warm-up steps run first (their rate does not depend on the total), the
steps per second of the warm-up after its first few steps are measured, and the total is fixed then
so that the run ends on the budget. Halfway to the decay the rate is measured again over the steps
since and the total set once more (the schedule is constant until the decay, so this changes nothing
already done). Passing `steps` fixes the total instead (to repeat a run: a run
is a function of its seed and its total, which training_info.json records, up to the non-determinism
of GPU kernels). A run stops at the budget's end even if the measured rate was too optimistic,
and says so.
"""
import sys
import time

import torch

from diffill.model.train.loop import held_out_loss, lr_at, progress_line, step_seed, train_step
from diffill.model.train.objective import RouterBalance

MEASURE_SKIP = 5       # first warm-up steps left out of the rate (allocation, autotuning)
SAFETY = 0.97          # share of the remaining budget the planned steps may use


def planned_total(step: int, steps_timed: int, seconds_timed: float, elapsed: float, budget_s: float) -> int:
    """Steps done plus what the measured rate fits into the rest of the budget (at least one more)."""
    rate = steps_timed / max(seconds_timed, 1e-9)
    return step + max(1, int(rate * max(0.0, budget_s - elapsed) * SAFETY))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_for(model, opt, batches, args, log=None) -> dict:
    """Train with batches.batch(step, args.batch_size) until the budget (args.minutes) or args.steps.
    args: seed, lr, warmup, decay_fraction, batch_size, minutes, steps (None: from the budget),
    ar_weight, pad_weight, bf16, log_every, eval_batches. Returns the run's record."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    device = model.device
    budget_s = args.minutes * 60
    total = args.steps
    g = torch.Generator(device=device)
    balance = RouterBalance(model)
    held = (lambda i: batches.batch(i, args.batch_size, held_out=True)) if batches.has_held_out() else None
    record = {"history": [], "planned_at_step": None, "measured_steps_per_s": None, "stopped_by_budget": False}
    tokens = torch.zeros((), dtype=torch.long, device=device)
    canvas_tokens = 0
    step, window = 0, []
    t0 = time.perf_counter()
    t_measure = t_plan = None
    replan_at = -1
    try:
        while total is None or step < total:
            if step == MEASURE_SKIP:
                _sync(device)
                t_measure = time.perf_counter()
            if total is None and step == max(args.warmup, MEASURE_SKIP + 1):
                _sync(device)
                now = time.perf_counter()
                total = planned_total(step, step - MEASURE_SKIP, now - t_measure, now - t0, budget_s)
                record.update(planned_at_step=step, measured_steps_per_s=round((step - MEASURE_SKIP) / (now - t_measure), 3))
                log(f"warm-up: {record['measured_steps_per_s']} steps/s; {total} steps fit the {args.minutes} min budget")
                t_plan, replan_at = now, step + (int(total * (1 - args.decay_fraction)) - step) // 2
            elif args.steps is None and total is not None and step == replan_at and step > record["planned_at_step"]:
                _sync(device)
                now = time.perf_counter()
                total = planned_total(step, step - record["planned_at_step"], now - t_plan, now - t0, budget_s)
                record["replanned"] = {"at_step": step, "steps": total,
                                       "steps_per_s": round((step - record["planned_at_step"]) / (now - t_plan), 3)}
                log(f"at step {step}: {record['replanned']['steps_per_s']} steps/s; the total is now {total} steps")
            elapsed = time.perf_counter() - t0
            if elapsed > budget_s and step > 0:
                record["stopped_by_budget"] = True
                log(f"budget spent at step {step} of {total}: stopping")
                break
            schedule_total = total if total is not None else 1 << 30   # only the warm-up is used until then
            batch = batches.batch(step, args.batch_size)
            g.manual_seed(step_seed(args.seed, step))
            loss, parts = train_step(model, opt, batch, g, lr_at(step, schedule_total, args.lr, args.warmup,
                                                                 args.decay_fraction), args, balance)
            step += 1
            tokens += (~batch.prompt_pad).sum() + batch.canvas.numel()
            canvas_tokens += batch.canvas.numel()
            window.append(parts)
            if step % args.log_every == 0 or step == total:
                elapsed = time.perf_counter() - t0
                avg = {k: sum(w.get(k, 0.0) for w in window) / len(window) for k in window[0]}
                window = []
                n = int(tokens)
                eta = (total - step) * elapsed / step if total else budget_s - elapsed
                log(progress_line(step, total, loss.item(), avg, opt.param_groups[0]["lr"], n / elapsed, eta))
                record["history"].append({"step": step, **{k: round(v, 4) for k, v in avg.items()},
                                          "tokens": n, "elapsed_s": round(elapsed, 1)})
    finally:
        balance.close()
    _sync(device)
    record.update(steps=total, step=step, tokens=int(tokens), canvas_tokens=canvas_tokens,
                  train_s=round(time.perf_counter() - t0, 1), final=step >= (total or 0))
    if held is not None:
        record["val_diffusion"] = round(held_out_loss(model, held, args.eval_batches, device=device.type), 4)
        log(f"step {step}: held-out diffusion loss {record['val_diffusion']:.4f}")
    return record
