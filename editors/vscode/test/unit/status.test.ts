import { strict as assert } from "node:assert";
import { test } from "node:test";
import { applyServerStatus, isServerStatus, statusItem, StatusView } from "../../src/status";

const starting: StatusView = { state: "starting", message: "" };

test("only well-formed diffill/status params are accepted", () => {
    assert.equal(isServerStatus({ state: "ready", message: "", latency_ms: 12 }), true);
    assert.equal(isServerStatus({ state: "sleeping" }), false);
    assert.equal(isServerStatus(null), false);
    assert.equal(isServerStatus("ready"), false);
});

test("ready shows the last latency, rounded", () => {
    const view = applyServerStatus(starting, { state: "ready", message: "embedded model on cpu", latency_ms: 183.6 });
    const item = statusItem(view);
    assert.match(item.text, /diffill 184 ms$/);
    assert.match(item.tooltip, /embedded model on cpu/);
    assert.equal(item.error, false);
});

test("a status without latency keeps the previous latency", () => {
    const ready = applyServerStatus(starting, { state: "ready", latency_ms: 90 });
    const busy = applyServerStatus(ready, { state: "busy" });
    const again = applyServerStatus(busy, { state: "ready", latency_ms: null });
    assert.equal(again.latencyMs, 90);
});

test("loading shows the progress percentage", () => {
    const view: StatusView = { state: "loading", message: "weights", percentage: 42.4 };
    assert.match(statusItem(view).text, /sync~spin\) diffill 42%/);
    assert.equal(applyServerStatus(view, { state: "ready" }).percentage, undefined);
});

test("an error is highlighted and a click opens the log", () => {
    const item = statusItem(applyServerStatus(starting, { state: "error", message: "model not found: ./nope" }));
    assert.equal(item.error, true);
    assert.equal(item.command, "diffill.showLog");
    assert.match(item.tooltip, /model not found: \.\/nope/);
});

test("outside errors a click toggles completions", () => {
    assert.equal(statusItem({ state: "ready", message: "" }).command, "diffill.toggle");
    assert.equal(statusItem({ state: "disabled", message: "" }).command, "diffill.toggle");
});
