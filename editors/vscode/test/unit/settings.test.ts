import { strict as assert } from "node:assert";
import { test } from "node:test";
import { configurationPayload, languageEnabled, readSettings, serverCommand } from "../../src/settings";

const from = (values: Record<string, unknown>) => readSettings((key) => values[key]);

test("unset options are left out so the server applies its defaults", () => {
    const settings = from({ model: "", device: "auto", dtype: "auto", maxSteps: null, debounceMs: null });
    assert.deepEqual(settings.server, {});
    assert.equal(settings.enable, true);
});

test("set options are passed under the server's names", () => {
    const settings = from({
        model: " ./ckpt ",
        device: "cuda:1",
        dtype: "bfloat16",
        maxSteps: 8,
        canvasCap: 64,
        debounceMs: 0,
        contextBudget: 2048,
        enabledLanguages: ["python", "rust"],
    });
    assert.deepEqual(settings.server, {
        model: "./ckpt",
        device: "cuda:1",
        dtype: "bfloat16",
        maxSteps: 8,
        canvasCap: 64,
        debounceMs: 0,
        contextBudget: 2048,
        enabledLanguages: ["python", "rust"],
    });
    assert.deepEqual(configurationPayload(settings), { diffill: settings.server });
});

test("negative or fractional numbers are ignored rather than sent", () => {
    assert.deepEqual(from({ maxSteps: -1, canvasCap: 2.5 }).server, {});
});

test("the server starts as `diffill serve` by default", () => {
    assert.deepEqual(serverCommand(from({})), { command: "diffill", args: ["serve"] });
});

test("a Python interpreter runs the CLI module", () => {
    assert.deepEqual(serverCommand(from({ "server.python": "/opt/py/bin/python3" })), {
        command: "/opt/py/bin/python3",
        args: ["-m", "diffill.lsp.cli", "serve"],
    });
});

test("an explicit command wins over the interpreter", () => {
    const settings = from({ "server.command": ["/x/diffill", "serve", "--log", "debug"], "server.python": "python3" });
    assert.deepEqual(serverCommand(settings), { command: "/x/diffill", args: ["serve", "--log", "debug"] });
});

test("enabled languages: star enables all, a list only those", () => {
    assert.equal(languageEnabled(from({}), "go"), true);
    assert.equal(languageEnabled(from({ enabledLanguages: ["*"] }), "go"), true);
    assert.equal(languageEnabled(from({ enabledLanguages: ["python"] }), "python"), true);
    assert.equal(languageEnabled(from({ enabledLanguages: ["python"] }), "go"), false);
});

test("the disable switch and the server env are read", () => {
    const settings = from({ enable: false, "server.env": { DIFFILL_LOG: "debug" } });
    assert.equal(settings.enable, false);
    assert.deepEqual(settings.env, { DIFFILL_LOG: "debug" });
    assert.deepEqual(from({ "server.env": { BAD: 1 } }).env, {});
});
