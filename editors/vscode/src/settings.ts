// The extension's settings and what they become for the server: the command that starts it and
// the options it reads (initializationOptions and workspace/didChangeConfiguration).
// Plain functions with no `vscode` import, so the unit tests run them under node.

/** Options the server understands; a missing key means "the server's default". */
export interface ServerOptions {
    model?: string;
    device?: string;
    dtype?: string;
    maxSteps?: number;
    canvasCap?: number;
    debounceMs?: number;
    contextBudget?: number;
    enabledLanguages?: string[];
}

export interface Settings {
    enable: boolean;
    command: string[];
    python: string;
    env: Record<string, string>;
    server: ServerOptions;
}

/** Reads a setting under `diffill.`; returns undefined when the user left it unset. */
export type Getter = (key: string) => unknown;

const stringOptions = ["model", "device", "dtype"] as const;
const integerOptions = ["maxSteps", "canvasCap", "debounceMs", "contextBudget"] as const;

export function readSettings(get: Getter): Settings {
    const server: ServerOptions = {};
    for (const key of stringOptions) {
        const value = get(key);
        if (typeof value === "string" && value.trim() !== "" && value !== "auto") {
            server[key] = value.trim();
        }
    }
    for (const key of integerOptions) {
        const value = get(key);
        if (typeof value === "number" && Number.isInteger(value) && value >= 0) {
            server[key] = value;
        }
    }
    const languages = get("enabledLanguages");
    if (Array.isArray(languages)) {
        server.enabledLanguages = languages.filter((x): x is string => typeof x === "string");
    }
    const command = get("server.command");
    const env = get("server.env");
    return {
        enable: get("enable") !== false,
        command: Array.isArray(command) ? command.filter((x): x is string => typeof x === "string" && x !== "") : [],
        python: typeof get("server.python") === "string" ? (get("server.python") as string).trim() : "",
        env: isStringRecord(env) ? env : {},
        server,
    };
}

function isStringRecord(value: unknown): value is Record<string, string> {
    return (
        typeof value === "object" &&
        value !== null &&
        !Array.isArray(value) &&
        Object.values(value).every((v) => typeof v === "string")
    );
}

/** How the server process is started: an explicit command, a Python interpreter, or `diffill` on PATH. */
export function serverCommand(settings: Settings): { command: string; args: string[] } {
    if (settings.command.length > 0) {
        return { command: settings.command[0], args: settings.command.slice(1) };
    }
    if (settings.python !== "") {
        return { command: settings.python, args: ["-m", "diffill.lsp.cli", "serve"] };
    }
    return { command: "diffill", args: ["serve"] };
}

/** Whether completions are wanted for a language id, by the same rule the server applies. */
export function languageEnabled(settings: Settings, languageId: string): boolean {
    const languages = settings.server.enabledLanguages;
    if (languages === undefined) {
        return true;
    }
    return languages.includes("*") || languages.includes(languageId);
}

/** The payload of workspace/didChangeConfiguration: the options under the "diffill" section. */
export function configurationPayload(settings: Settings): { diffill: ServerOptions } {
    return { diffill: settings.server };
}
