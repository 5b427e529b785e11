import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readSettings } from "../../src/settings";
import { MACHINE_ONLY_SERVER_SETTINGS, serverSettingsFrom } from "../../src/trust";

interface Manifest {
    capabilities?: { untrustedWorkspaces?: { supported: unknown; restrictedConfigurations?: string[] } };
    contributes: { configuration: { properties: Record<string, { scope?: string }> } };
}

const manifest: Manifest = JSON.parse(readFileSync(join(__dirname, "../../../package.json"), "utf8"));
const properties = manifest.contributes.configuration.properties;

// Settings that pick a program to run, its environment, where code goes, a key or the TLS trust.
const DANGEROUS = /^diffill\.(server\.|backend$|allowDownload$|workerNice$|remote\.(url|apiKeyEnv|caBundle|allowInsecureHttp|insecureSkipTlsVerify)$)/;

test("settings that choose what runs or where code is sent are machine-scoped", () => {
    const dangerous = Object.keys(properties).filter((key) => DANGEROUS.test(key));
    assert.ok(dangerous.includes("diffill.server.command") && dangerous.includes("diffill.server.env"));
    assert.ok(dangerous.includes("diffill.remote.url") && dangerous.includes("diffill.backend"));
    for (const key of dangerous) {
        assert.equal(properties[key].scope, "machine", `${key} must be machine-scoped: a workspace could set it`);
    }
});

test("untrusted workspaces are declared, with the dangerous settings and serverSettings restricted", () => {
    const untrusted = manifest.capabilities?.untrustedWorkspaces;
    assert.equal(untrusted?.supported, "limited");
    const restricted = new Set(untrusted?.restrictedConfigurations ?? []);
    for (const key of Object.keys(properties).filter((k) => DANGEROUS.test(k))) {
        assert.ok(restricted.has(key), `${key} is not restricted in untrusted workspaces`);
    }
    assert.ok(restricted.has("diffill.serverSettings") && restricted.has("diffill.model"));
    for (const key of restricted) {
        assert.ok(key in properties, `${key} is not a setting`);
    }
});

test("a workspace's serverSettings cannot set the worker socket, downloads, the worker's niceness or the remote backend", () => {
    const inspected = {
        defaultValue: {},
        globalValue: { workerSocket: "/run/user/1000/mine.sock", prefixShare: 0.6 },
        workspaceValue: {
            workerSocket: "/tmp/attacker.sock",
            allowDownload: true,
            workerNice: 0,
            backend: "remote",
            remote: { url: "https://attacker.example/v1" },
            prefixShare: 0.5,
            workerMode: "private",
        },
        workspaceFolderValue: { workerSocket: "/tmp/other.sock", suffixShare: 0.2 },
    };
    const merged = serverSettingsFrom(inspected, true);
    for (const key of MACHINE_ONLY_SERVER_SETTINGS) {
        assert.notEqual(merged[key], (inspected.workspaceValue as Record<string, unknown>)[key]);
    }
    assert.deepEqual(merged, {
        workerSocket: "/run/user/1000/mine.sock", // the user's own value stays
        prefixShare: 0.5, // harmless options: the workspace's win
        workerMode: "private",
        suffixShare: 0.2,
    });
    // and what reaches the server
    const server = readSettings((key) => (key === "serverSettings" ? merged : undefined)).server;
    assert.equal(server.workerSocket, "/run/user/1000/mine.sock");
    assert.equal(server.allowDownload, false);
    assert.equal(server.workerNice, 10);
    assert.notEqual(server.backend, "remote");
});

test("an untrusted workspace sets none of serverSettings", () => {
    const merged = serverSettingsFrom({ globalValue: { prefixShare: 0.6 }, workspaceValue: { prefixShare: 0.1 } }, false);
    assert.deepEqual(merged, { prefixShare: 0.6 });
    assert.deepEqual(serverSettingsFrom(undefined, true), {});
    assert.deepEqual(serverSettingsFrom({ workspaceValue: ["not", "an", "object"] }, true), {});
});
