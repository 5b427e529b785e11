import { strict as assert } from "node:assert";
import { test } from "node:test";
import { findServer, isFound, LookupEnv } from "../../src/lookup";
import { readSettings } from "../../src/settings";

const from = (values: Record<string, unknown>) => readSettings((key) => values[key]);

function machine(files: string[], over: Partial<LookupEnv> = {}): LookupEnv {
    return {
        pathVar: "/usr/local/bin:/usr/bin",
        home: "/home/ada",
        folders: ["/work/proj"],
        trusted: true,
        isExecutable: (file) => files.includes(file),
        platform: "linux",
        ...over,
    };
}

test("diffill on PATH comes first", () => {
    const found = findServer(from({}), machine(["/usr/bin/diffill", "/home/ada/.local/bin/diffill"]));
    assert.deepEqual(found, { command: "/usr/bin/diffill", args: ["serve"], via: "PATH" });
});

test("not on PATH: ~/.local/bin, where pip install --user and pipx put it", () => {
    const found = findServer(from({}), machine(["/home/ada/.local/bin/diffill", "/work/proj/.venv/bin/diffill"]));
    assert.deepEqual(found, { command: "/home/ada/.local/bin/diffill", args: ["serve"], via: "~/.local/bin" });
});

test("then a trusted folder's .venv/bin", () => {
    const found = findServer(from({}), machine(["/work/proj/.venv/bin/diffill"]));
    assert.deepEqual(found, { command: "/work/proj/.venv/bin/diffill", args: ["serve"], via: "the folder's .venv" });
});

test("an untrusted folder's .venv is never run, and the message says why it was not searched", () => {
    const found = findServer(from({}), machine(["/work/proj/.venv/bin/diffill"], { trusted: false }));
    assert.equal(isFound(found), false);
    assert.ok(!isFound(found));
    assert.equal(found.tried.includes("/work/proj/.venv/bin/diffill"), false);
    assert.match(found.message, /not trusted/);
});

test("found nowhere: the message names diffill.server.command with an example, and says what was searched", () => {
    const found = findServer(from({}), machine([]));
    assert.ok(!isFound(found));
    assert.match(found.message, /diffill\.server\.command/);
    assert.match(found.message, /e\.g\. \["\/path\/to\/diffill\/\.venv\/bin\/diffill", "serve"\]/);
    assert.match(found.message, /pip install --user \./);
    assert.doesNotMatch(found.message, /ENOENT/);
    assert.deepEqual(found.tried, [
        "/usr/local/bin/diffill", "/usr/bin/diffill", "/home/ada/.local/bin/diffill", "/work/proj/.venv/bin/diffill",
    ]);
});

test("a set command wins over the lookup; a path that is not there names the setting", () => {
    const settings = from({ "server.command": ["/x/diffill", "serve", "--log", "debug"], "server.python": "python3" });
    assert.deepEqual(findServer(settings, machine(["/x/diffill", "/usr/bin/diffill"])),
        { command: "/x/diffill", args: ["serve", "--log", "debug"], via: "diffill.server.command" });
    const missing = findServer(settings, machine(["/usr/bin/diffill"]));
    assert.ok(!isFound(missing));
    assert.match(missing.message, /diffill\.server\.command names \/x\/diffill, which is not an executable file/);
    assert.match(missing.message, /e\.g\. \["\/home\/ada\/\.local\/bin\/diffill", "serve"\]/);
});

test("a bare command name is left to the PATH of the process that runs it", () => {
    assert.deepEqual(findServer(from({ "server.command": ["diffill", "serve"] }), machine([])),
        { command: "diffill", args: ["serve"], via: "diffill.server.command" });
});

test("a Python interpreter runs the CLI module", () => {
    assert.deepEqual(findServer(from({ "server.python": "/opt/py/bin/python3" }), machine(["/opt/py/bin/python3"])), {
        command: "/opt/py/bin/python3",
        args: ["-m", "diffill.lsp.cli", "serve"],
        via: "diffill.server.python",
    });
    assert.match((findServer(from({ "server.python": "/opt/py/bin/python3" }), machine([])) as { message: string }).message,
        /diffill\.server\.python names \/opt\/py\/bin\/python3/);
});
