// Where the server is found when `diffill.server.command` and `diffill.server.python` are not set:
// `diffill` on PATH, then where `pip install --user .` and `pipx install .` put it (~/.local/bin),
// then a trusted folder's own `.venv/bin` (the diffill checkout's quick start makes one). When it is
// nowhere, the message names the setting to set, with an example. Plain functions with no `vscode`
// import, so the unit tests run them under node.
import * as path from "node:path";
import { Settings } from "./settings";

/** What the lookup may look at: the machine's state, passed in so the tests choose it. */
export interface LookupEnv {
    /** The PATH of the editor's environment. */
    pathVar: string;
    home: string;
    /** Workspace folders on disk. Only a trusted workspace's folders are searched: their `.venv` is their code. */
    folders: string[];
    trusted: boolean;
    /** Whether a file exists and is executable. */
    isExecutable: (file: string) => boolean;
    platform?: string;
}

export interface Found {
    command: string;
    args: string[];
    /** Where it came from, for the log: "diffill.server.command", "PATH", "~/.local/bin", "the folder's .venv". */
    via: string;
}

export interface NotFound {
    /** What was looked for and where, for the log. */
    tried: string[];
    /** The message shown to the user: what is missing and the setting that fixes it, with an example. */
    message: string;
}

export const NOT_FOUND_SETTING = "diffill.server.command";

function executableNames(platform: string): string[] {
    return platform === "win32" ? ["diffill.exe", "diffill.cmd", "diffill"] : ["diffill"];
}

/** The places a `diffill` executable is looked for, in order, each with its name for the log. */
export function candidates(env: LookupEnv): { file: string; via: string }[] {
    const platform = env.platform ?? process.platform;
    const names = executableNames(platform);
    const out: { file: string; via: string }[] = [];
    const separator = platform === "win32" ? ";" : ":";
    for (const dir of env.pathVar.split(separator)) {
        if (dir !== "") {
            for (const name of names) {
                out.push({ file: path.join(dir, name), via: "PATH" });
            }
        }
    }
    if (env.home !== "") {
        for (const name of names) {
            out.push({ file: path.join(env.home, ".local", "bin", name), via: "~/.local/bin" });
        }
    }
    if (env.trusted) {
        for (const folder of env.folders) {
            const bin = platform === "win32" ? path.join(folder, ".venv", "Scripts") : path.join(folder, ".venv", "bin");
            for (const name of names) {
                out.push({ file: path.join(bin, name), via: "the folder's .venv" });
            }
        }
    }
    return out;
}

/** How to start the server: the settings' command or Python when set, else the first `diffill` found. */
export function findServer(settings: Settings, env: LookupEnv): Found | NotFound {
    if (settings.command.length > 0) {
        const [command, ...args] = settings.command;
        // A command given as a path must be there; a bare name is looked up on PATH when it runs.
        if (command.includes("/") && !env.isExecutable(command)) {
            return {
                tried: [command],
                message:
                    `diffill: ${NOT_FOUND_SETTING} names ${command}, which is not an executable file. ` +
                    `Set it to the diffill command, e.g. ["${path.join(env.home || "~", ".local", "bin", "diffill")}", "serve"].`,
            };
        }
        return { command, args, via: NOT_FOUND_SETTING };
    }
    if (settings.python !== "") {
        if (settings.python.includes("/") && !env.isExecutable(settings.python)) {
            return {
                tried: [settings.python],
                message: `diffill: diffill.server.python names ${settings.python}, which is not an executable file. ` +
                    "Set it to a Python with diffill installed, or clear it to look for the diffill command.",
            };
        }
        return { command: settings.python, args: ["-m", "diffill.lsp.cli", "serve"], via: "diffill.server.python" };
    }
    const places = candidates(env);
    for (const place of places) {
        if (env.isExecutable(place.file)) {
            return { command: place.file, args: ["serve"], via: place.via };
        }
    }
    const where = env.trusted ? "on PATH, in ~/.local/bin or in the folder's .venv/bin" : "on PATH or in ~/.local/bin";
    const untrusted = env.trusted ? "" : " (this folder is not trusted, so its .venv is not searched)";
    return {
        tried: places.map((p) => p.file),
        message:
            `diffill: the diffill command was not found ${where}${untrusted}. ` +
            `Install it (\`pip install --user .\` in the diffill checkout) or set ${NOT_FOUND_SETTING}, ` +
            `e.g. ["/path/to/diffill/.venv/bin/diffill", "serve"].`,
    };
}

export function isFound(result: Found | NotFound): result is Found {
    return (result as Found).command !== undefined;
}
