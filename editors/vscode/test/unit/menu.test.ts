import { strict as assert } from "node:assert";
import { test } from "node:test";
import { menuItems, modelName, statusSummary } from "../../src/menu";
import { readSettings } from "../../src/settings";

const from = (values: Record<string, unknown>) => readSettings((key) => values[key]);
const labels = (items: { label: string }[]) => items.map((i) => i.label.replace(/^\$\([^)]*\) /, ""));

test("the menu offers disable, restart, the log, the model and status, and the settings", () => {
    const items = menuItems({ state: "ready", message: "" }, from({ model: "/ckpt/dg" }), false);
    assert.deepEqual(labels(items), ["Disable completions", "Restart server", "Show log", "Show model and status", "Open settings"]);
    assert.deepEqual(items.map((i) => i.command),
        ["diffill.disable", "diffill.restart", "diffill.showLog", "diffill.showStatus", "workbench.action.openSettings"]);
    assert.equal(items[3].description, "/ckpt/dg");
});

test("with completions off it offers to enable them", () => {
    const items = menuItems({ state: "disabled", message: "" }, from({ enable: false }), false);
    assert.equal(items[0].command, "diffill.enable");
    assert.equal(labels(items)[0], "Enable completions");
});

test("after an error the log comes first", () => {
    const items = menuItems({ state: "error", message: "model not found" }, from({}), false);
    assert.equal(items[0].command, "diffill.showLog");
    assert.equal(items.filter((i) => i.command === "diffill.showLog").length, 1);
});

test("in Restricted Mode it offers to manage the folder's trust", () => {
    const items = menuItems({ state: "ready", message: "" }, from({}), true);
    assert.ok(items.some((i) => i.command === "workbench.trust.manage"));
    assert.ok(!menuItems({ state: "ready", message: "" }, from({}), false).some((i) => i.command === "workbench.trust.manage"));
});

test("the model is named as the user configured it", () => {
    assert.equal(modelName(from({})), "the embedded default model");
    assert.equal(modelName(from({ model: "google/diffusiongemma-26B-A4B-it" })), "google/diffusiongemma-26B-A4B-it");
    assert.equal(modelName(from({ backend: "remote", "remote.url": "https://gpu1:8000/v1", "remote.model": "dg" })),
        "dg on https://gpu1:8000/v1");
});

test("the status summary gives state, model, latency with slow reason, and the server command", () => {
    const text = statusSummary({ state: "ready", message: "", latencyMs: 3400, slowReason: "the machine was busy" },
        from({}), false, "/home/ada/.local/bin/diffill serve (~/.local/bin)");
    assert.match(text, /^state: ready$/m);
    assert.match(text, /^model: the embedded default model$/m);
    assert.match(text, /^last completion: 3400 ms, slow: the machine was busy$/m);
    assert.match(text, /^server: \/home\/ada\/\.local\/bin\/diffill serve \(~\/\.local\/bin\)$/m);
});
