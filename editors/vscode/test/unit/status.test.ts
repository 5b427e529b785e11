import { strict as assert } from "node:assert";
import { test } from "node:test";
import { applyServerStatus, isServerStatus, MENU_COMMAND, statusItem, StatusView, withAnswer } from "../../src/status";

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

test("an error is highlighted and says why", () => {
    const item = statusItem(applyServerStatus(starting, { state: "error", message: "model not found: ./nope" }));
    assert.equal(item.error, true);
    assert.match(item.tooltip, /model not found: \.\/nope/);
});

test("a click opens the menu in every state, never toggles completions", () => {
    for (const state of ["starting", "loading", "ready", "busy", "disabled", "stopped", "error"] as const) {
        assert.equal(statusItem({ state, message: "" }).command, MENU_COMMAND, state);
        assert.equal(statusItem({ state, message: "" }, { restricted: true }).command, MENU_COMMAND, state);
    }
});

test("a slow fill shows the server's slow_reason in the text and the tooltip", () => {
    const view = applyServerStatus(starting, {
        state: "ready", latency_ms: 3400, slow_reason: "the machine was busy (load 5.3 on 2 CPUs)",
    });
    const item = statusItem(view);
    assert.match(item.text, /diffill 3400 ms, slow: the machine was busy$/, "the details in parentheses are in the tooltip only");
    assert.match(item.tooltip, /3400 ms; it was slow because the machine was busy \(load 5\.3 on 2 CPUs\)/);
});

test("without slow_reason, or with null, nothing extra is shown", () => {
    for (const status of [{ state: "ready", latency_ms: 120 }, { state: "ready", latency_ms: 120, slow_reason: null }] as const) {
        const item = statusItem(applyServerStatus(starting, status));
        assert.match(item.text, /^\$\(check\) diffill 120 ms$/);
        assert.doesNotMatch(item.tooltip, /slow/);
    }
});

test("the next fast fill clears the slow reason; a status without latency keeps it", () => {
    const slow = applyServerStatus(starting, { state: "ready", latency_ms: 3400, slow_reason: "the machine was busy" });
    assert.equal(applyServerStatus(slow, { state: "busy" }).slowReason, "the machine was busy");
    assert.equal(applyServerStatus(slow, { state: "ready", latency_ms: 150, slow_reason: null }).slowReason, undefined);
    // an older server that never sends the field: a new latency is a new fill
    assert.equal(applyServerStatus(slow, { state: "ready", latency_ms: 150 }).slowReason, undefined);
});

test("Restricted Mode shows a shield, says restricted and explains why in the tooltip", () => {
    const item = statusItem({ state: "ready", message: "", latencyMs: 90 }, { restricted: true });
    assert.equal(item.text, "$(shield) diffill restricted 90 ms");
    assert.match(item.tooltip, /Restricted Mode: this folder is not trusted/);
    assert.match(item.tooltip, /Trust the folder/);
    assert.doesNotMatch(statusItem({ state: "ready", message: "" }).tooltip, /Restricted/);
});

test("a slow fill with no completion says both, the shorter first", () => {
    const view = withAnswer(applyServerStatus(starting, { state: "ready", latency_ms: 6629, slow_reason: "the machine was busy (load 3.2 on 2 CPUs)" }), false);
    assert.equal(statusItem(view).text, "$(check) diffill 6629 ms (no completion shown), slow: the machine was busy");
});

test("an answer with no completion is said in the status until one is shown", () => {
    const ready: StatusView = { state: "ready", message: "", latencyMs: 700 };
    const none = withAnswer(ready, false);
    assert.equal(statusItem(none).text, "$(check) diffill 700 ms (no completion shown)");
    assert.match(statusItem(none).tooltip, /gates refused/);
    assert.equal(statusItem(withAnswer(none, true)).text, "$(check) diffill 700 ms");
    assert.equal(applyServerStatus(none, { state: "ready", latency_ms: 650 }).noneShown, true, "a status keeps what the last answer was");
});
