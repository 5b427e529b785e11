// The extension's settings and what they become for the server: the command that starts it and
// the options it reads (initializationOptions and workspace/didChangeConfiguration, same names as
// the server's settings). Plain functions with no `vscode` import, so the unit tests run them under node.

/** The server's `remote` settings: a serving engine (vLLM, NIM) instead of the local model. The key is
 * never one of them: it travels in the server's environment, under the name `apiKeyEnv`. */
export interface RemoteOptions {
    url: string | null;
    model: string | null; // null: the first model the server lists
    endpoint: string; // completions (vLLM, self-hosted NIM) | chat (hosted NIM)
    apiKeyEnv: string;
    caBundle: string | null;
    insecureSkipTlsVerify: boolean;
    allowInsecureHttp: boolean;
    timeoutMs: number;
    [extra: string]: unknown;
}

/** Options sent to the server. Every key is always sent, so a change back to a default reaches it too. */
export interface ServerOptions {
    model: string | null;
    device: string;
    dtype: string;
    maxSteps: number | null;
    canvasCap: number;
    debounceMs: number;
    contextTokens: number | null; // null: the checkpoint's own budget
    languages: string[] | null;
    backend: string; // local | remote
    remote: RemoteOptions;
    allowDownload: boolean; // let the worker download a hub id that is not in the local cache
    workerNice: number; // the worker's scheduling niceness, 0..19
    [extra: string]: unknown;
}

export interface Settings {
    enable: boolean;
    command: string[];
    python: string;
    env: Record<string, string>;
    server: ServerOptions;
}

/** Reads a setting under `diffill.`; undefined when it has no value. */
export type Getter = (key: string) => unknown;

/** Defaults of the settings the extension declares (package.json repeats them for the settings UI). */
export const DEFAULTS: ServerOptions = {
    model: null,
    device: "auto",
    dtype: "auto",
    maxSteps: null,
    canvasCap: 256,
    debounceMs: 75,
    contextTokens: null,
    languages: null,
    backend: "local",
    remote: {
        url: null,
        model: null,
        endpoint: "completions",
        apiKeyEnv: "DIFFILL_API_KEY",
        caBundle: null,
        insecureSkipTlsVerify: false,
        allowInsecureHttp: false,
        timeoutMs: 6000,
    },
    allowDownload: false,
    workerNice: 10,
};

/** Where the extension keeps the remote server's key (VS Code's secret storage). */
export const API_KEY_SECRET = "diffill.remote.apiKey";

function text(value: unknown): string | null {
    return typeof value === "string" && value.trim() !== "" ? value.trim() : null;
}

function count(value: unknown): number | null {
    return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : null;
}

function niceness(value: unknown): number | null {
    const n = count(value);
    return n !== null && n <= 19 ? n : null;
}

function stringList(value: unknown): string[] | null {
    return Array.isArray(value) ? value.filter((x): x is string => typeof x === "string" && x !== "") : null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function readSettings(get: Getter): Settings {
    const languages = stringList(get("languages"));
    const env = get("server.env");
    const extra = get("serverSettings");
    const server: ServerOptions = {
        // Other server settings (prefixShare, workerMode, ...) pass through as written.
        ...(isRecord(extra) ? extra : {}),
        model: text(get("model")),
        device: text(get("device")) ?? DEFAULTS.device,
        dtype: text(get("dtype")) ?? DEFAULTS.dtype,
        maxSteps: count(get("maxSteps")) || null,
        canvasCap: count(get("canvasCap")) || DEFAULTS.canvasCap,
        debounceMs: count(get("debounceMs")) ?? DEFAULTS.debounceMs,
        contextTokens: count(get("contextTokens")) || null,
        languages: languages === null || languages.includes("*") ? null : languages,
        backend: text(get("backend")) === "remote" ? "remote" : "local",
        remote: readRemote(get, isRecord(extra) && isRecord(extra.remote) ? extra.remote : {}),
        allowDownload: get("allowDownload") === true,
        workerNice: niceness(get("workerNice")) ?? DEFAULTS.workerNice,
    };
    return {
        enable: get("enable") !== false,
        command: stringList(get("server.command")) ?? [],
        python: text(get("server.python")) ?? "",
        env: isRecord(env) && Object.values(env).every((v) => typeof v === "string") ? (env as Record<string, string>) : {},
        server,
    };
}

function readRemote(get: Getter, extra: Record<string, unknown>): RemoteOptions {
    const d = DEFAULTS.remote;
    const endpoint = text(get("remote.endpoint"));
    return {
        ...extra,
        url: text(get("remote.url")),
        model: text(get("remote.model")),
        endpoint: endpoint === "chat" ? "chat" : d.endpoint,
        apiKeyEnv: text(get("remote.apiKeyEnv")) ?? d.apiKeyEnv,
        caBundle: text(get("remote.caBundle")),
        insecureSkipTlsVerify: get("remote.insecureSkipTlsVerify") === true,
        allowInsecureHttp: get("remote.allowInsecureHttp") === true,
        timeoutMs: count(get("remote.timeoutMs")) || d.timeoutMs,
    };
}

/** The server process's environment on top of the editor's: `server.env`, and the stored key under the
 * name the server reads it from (only with the remote backend, so a local model never sees it). */
export function serverEnv(settings: Settings, apiKey: string | undefined): Record<string, string> {
    const env = { ...settings.env };
    if (apiKey && settings.server.backend === "remote") {
        env[settings.server.remote.apiKeyEnv] = apiKey;
    }
    return env;
}

/** Whether completions are wanted for a language id, by the same rule the server applies. */
export function languageEnabled(settings: Settings, languageId: string): boolean {
    const languages = settings.server.languages;
    return languages === null || languages.map((x) => x.toLowerCase()).includes(languageId.toLowerCase());
}

/** The payload of workspace/didChangeConfiguration: the options under the "diffill" section. */
export function configurationPayload(settings: Settings): { diffill: ServerOptions } {
    return { diffill: settings.server };
}
