"""The worker's fast path and priority as a user meets them: a real server, a real worker process on a
random-weight checkpoint of the uniform process, the fast path forced on the CPU (`fastPath: on`).
A fast part made to fail (DIFFILL_FAST_FAULTS) leaves the worker ready, degraded, with the reason in
the status; a setting turns parts off; the worker runs below the editor's priority."""
import os

from diffill.model.worker.daemon import busy_machine
from server_harness import editor

FAST = {"debounceMs": 0, "maxSteps": 4, "canvasCap": 16, "workerMode": "private", "fastPath": "on"}


async def test_a_fast_part_that_fails_its_check_leaves_the_worker_ready_and_degraded_with_the_reason(
        tiny_checkpoint):
    env = {"DIFFILL_FAST_FAULTS": "fused_head=mismatch"}
    async with editor({**FAST, "model": tiny_checkpoint}, env=env) as s:
        ready = await s.wait_ready()
        assert ready["state"] == "ready", ready
        assert ready["message"].startswith("ready (degraded: fused_head: the fused head's argmax differs")
        worker = (await s.stats())["worker"]["status"]
        assert worker["fast_path"]["fused_head"].startswith("the fused head's argmax differs")
        assert worker["fast_path"]["device_sampler"].startswith("ok")


async def test_fast_parts_turned_off_by_the_setting_are_off_and_the_worker_is_not_degraded(tiny_checkpoint):
    async with editor({**FAST, "model": tiny_checkpoint, "fastPathOff": ["fused_head", "graph"]}) as s:
        ready = await s.wait_ready()
        assert ready["state"] == "ready" and "degraded" not in ready["message"], ready
        fast = (await s.stats())["worker"]["status"]["fast_path"]
        assert fast["fused_head"] == fast["graph"] == "off (setting)" and fast["device_sampler"].startswith("ok")


async def test_the_worker_runs_niced_below_the_editor_by_default_and_as_set(tiny_checkpoint):
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    for options, want in (({}, min(19, mine + 10)), ({"workerNice": 0}, mine)):
        async with editor({**FAST, "fastPath": "off", "model": tiny_checkpoint, **options}) as s:
            await s.wait_ready()
            pid = (await s.stats())["worker"]["status"]["pid"]
            assert os.getpriority(os.PRIO_PROCESS, pid) == want, options


def test_a_slow_cpu_fill_on_a_busy_machine_says_so_and_nothing_else_does():
    assert busy_machine(2400.0, "cpu", load=5.3, cpus=2) == "the machine was busy (load 5.3 on 2 CPUs)"
    assert busy_machine(2400.0, "cpu", load=1.5, cpus=2) is None      # slow, but not because of the load
    assert busy_machine(120.0, "cpu", load=9.0, cpus=2) is None       # not slow
    assert busy_machine(2400.0, "cuda", load=9.0, cpus=2) is None     # a GPU fill: the CPUs do not decide it
