import { strict as assert } from "node:assert";
import { test } from "node:test";
import { configurationPayload, DEFAULTS, languageEnabled, readSettings, serverEnv } from "../../src/settings";

const from = (values: Record<string, unknown>) => readSettings((key) => values[key]);

test("unset settings send the defaults, so a change back to a default reaches the server", () => {
    const settings = from({ model: "", maxSteps: null });
    assert.deepEqual(settings.server, DEFAULTS);
    assert.equal(settings.server.model, null);
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
        contextTokens: 4096,
        languages: ["python", "rust"],
    });
    assert.deepEqual(settings.server, {
        model: "./ckpt",
        device: "cuda:1",
        dtype: "bfloat16",
        maxSteps: 8,
        canvasCap: 64,
        debounceMs: 0,
        contextTokens: 4096,
        languages: ["python", "rust"],
        backend: "local",
        remote: DEFAULTS.remote,
        allowDownload: false,
        workerNice: 10,
    });
    assert.deepEqual(configurationPayload(settings), { diffill: settings.server });
});

test("other server settings pass through, but never override the declared ones", () => {
    const settings = from({ serverSettings: { workerMode: "private", prefixShare: 0.6, canvasCap: 1 }, canvasCap: 32 });
    assert.equal(settings.server.workerMode, "private");
    assert.equal(settings.server.prefixShare, 0.6);
    assert.equal(settings.server.canvasCap, 32);
});

test("negative or fractional numbers fall back to the defaults", () => {
    const server = from({ maxSteps: -1, canvasCap: 2.5, debounceMs: -3 }).server;
    assert.equal(server.maxSteps, null);
    assert.equal(server.canvasCap, DEFAULTS.canvasCap);
    assert.equal(server.debounceMs, DEFAULTS.debounceMs);
    assert.equal(server.contextTokens, null, "no budget is sent: the server takes the checkpoint's own");
});

test("languages: star enables all, a list only those", () => {
    assert.equal(languageEnabled(from({}), "go"), true);
    assert.equal(from({ languages: ["*"] }).server.languages, null);
    assert.equal(languageEnabled(from({ languages: ["*"] }), "go"), true);
    assert.equal(languageEnabled(from({ languages: ["Python"] }), "python"), true);
    assert.equal(languageEnabled(from({ languages: ["python"] }), "go"), false);
});

test("the disable switch and the server env are read", () => {
    const settings = from({ enable: false, "server.env": { DIFFILL_LOG: "debug" } });
    assert.equal(settings.enable, false);
    assert.deepEqual(settings.env, { DIFFILL_LOG: "debug" });
    assert.deepEqual(from({ "server.env": { BAD: 1 } }).env, {});
});

test("the remote backend's settings go under remote, with the contract's names", () => {
    const settings = from({
        backend: "remote",
        "remote.url": " https://gpu1:8000/v1 ",
        "remote.model": "",
        "remote.endpoint": "chat",
        "remote.apiKeyEnv": "NVIDIA_API_KEY",
        "remote.caBundle": "/etc/ssl/team-ca.pem",
        "remote.timeoutMs": 3000,
        serverSettings: { remote: { stream: false, url: "ignored" } },
    });
    assert.equal(settings.server.backend, "remote");
    assert.deepEqual(settings.server.remote, {
        stream: false,
        url: "https://gpu1:8000/v1",
        model: null,
        endpoint: "chat",
        apiKeyEnv: "NVIDIA_API_KEY",
        caBundle: "/etc/ssl/team-ca.pem",
        insecureSkipTlsVerify: false,
        allowInsecureHttp: false,
        timeoutMs: 3000,
    });
    assert.equal(from({ backend: "cloud" }).server.backend, "local");
    assert.equal(from({ "remote.endpoint": "embeddings" }).server.remote.endpoint, "completions");
});

test("the stored key reaches the server's environment under apiKeyEnv, and only for the remote backend", () => {
    const remote = from({ backend: "remote", "remote.apiKeyEnv": "TEAM_KEY", "server.env": { A: "1" } });
    assert.deepEqual(serverEnv(remote, "sk-123"), { A: "1", TEAM_KEY: "sk-123" });
    assert.deepEqual(serverEnv(remote, undefined), { A: "1" });
    assert.deepEqual(serverEnv(from({ "remote.apiKeyEnv": "TEAM_KEY" }), "sk-123"), {});
    assert.equal(JSON.stringify(configurationPayload(remote)).includes("sk-123"), false);
});

test("diffill.allowDownload and diffill.workerNice reach the server as allowDownload and workerNice", () => {
    const settings = from({ allowDownload: true, workerNice: 15 });
    assert.equal(configurationPayload(settings).diffill.allowDownload, true);
    assert.equal(configurationPayload(settings).diffill.workerNice, 15);
    assert.equal(from({}).server.allowDownload, false, "off unless set: nothing is downloaded by default");
});

test("an unset or out-of-range workerNice sends the default, 10, so a change back reaches the server", () => {
    assert.equal(from({}).server.workerNice, 10);
    assert.equal(from({ workerNice: 20 }).server.workerNice, 10);
    assert.equal(from({ workerNice: -1 }).server.workerNice, 10);
    assert.equal(from({ workerNice: 0 }).server.workerNice, 0);
});

test("diffill.allowDownload wins over an allowDownload in diffill.serverSettings", () => {
    assert.equal(from({ serverSettings: { allowDownload: true } }).server.allowDownload, false);
    assert.equal(from({ serverSettings: { allowDownload: false }, allowDownload: true }).server.allowDownload, true);
});
