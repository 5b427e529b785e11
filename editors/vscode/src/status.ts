// What the status bar item says. The server reports its state with the `diffill/status`
// notification and the model load with `$/progress`; the extension adds its own states
// (starting, stopped, disabled). Plain functions, tested under node.

/** Params of the `diffill/status` notification. */
export interface ServerStatus {
    state: "loading" | "ready" | "busy" | "error";
    message?: string;
    latency_ms?: number | null;
    /** Why the last fill was slow (e.g. "the machine was busy (load 5.3 on 2 CPUs)"), or null; absent from older servers. */
    slow_reason?: string | null;
}

export type StatusState = ServerStatus["state"] | "starting" | "stopped" | "disabled";

export interface StatusView {
    state: StatusState;
    message: string;
    latencyMs?: number;
    /** Model load progress, 0-100, while loading. */
    percentage?: number;
    /** Why the last fill was slow, when the server says so. */
    slowReason?: string;
    /** The last answered request showed nothing (the gates refused the fill, or there was nothing to fill). */
    noneShown?: boolean;
}

/** What the extension knows besides the server's state. */
export interface StatusContext {
    /** The folder is not trusted (Restricted Mode): its own diffill settings are ignored. */
    restricted?: boolean;
}

export interface StatusItem {
    text: string;
    tooltip: string;
    /** Command run on click: always the menu (enable/disable, restart, log, model and status). */
    command: typeof MENU_COMMAND;
    error: boolean;
}

export const STATUS_METHOD = "diffill/status";
export const MENU_COMMAND = "diffill.showMenu";

export const RESTRICTED_TOOLTIP =
    "Restricted Mode: this folder is not trusted, so diffill ignores the folder's own settings for the server " +
    "command, the model, the backend and the server settings, and does not look for the server in its .venv; " +
    "your user settings apply. Trust the folder (Manage Workspace Trust) to use them.";

export function isServerStatus(value: unknown): value is ServerStatus {
    if (typeof value !== "object" || value === null) {
        return false;
    }
    const state = (value as { state?: unknown }).state;
    return state === "loading" || state === "ready" || state === "busy" || state === "error";
}

/** Folds one `diffill/status` notification into the view; a ready/busy without latency keeps the last one. */
export function applyServerStatus(view: StatusView, status: ServerStatus): StatusView {
    const latency = typeof status.latency_ms === "number" ? Math.round(status.latency_ms) : view.latencyMs;
    // slow_reason describes the last fill: a status that reports a latency replaces it; one without keeps it.
    let slowReason = view.slowReason;
    if ("slow_reason" in status) {
        slowReason = typeof status.slow_reason === "string" && status.slow_reason.trim() !== "" ? status.slow_reason.trim() : undefined;
    } else if (typeof status.latency_ms === "number" && status.latency_ms !== view.latencyMs) {
        slowReason = undefined;
    }
    return {
        state: status.state,
        message: status.message ?? "",
        latencyMs: latency,
        percentage: status.state === "loading" ? view.percentage : undefined,
        slowReason: status.state === "error" ? undefined : slowReason,
        noneShown: view.noneShown,
    };
}

/** Records whether the last answered inline-completion request showed anything. */
export function withAnswer(view: StatusView, shown: boolean): StatusView {
    return { ...view, noneShown: !shown };
}

export function statusItem(view: StatusView, context: StatusContext = {}): StatusItem {
    const detail = view.message ? `: ${view.message}` : "";
    const restricted = context.restricted === true;
    const icon = (normal: string) => (restricted ? "$(shield)" : normal);
    const name = restricted ? "diffill restricted" : "diffill";
    const extra = restricted ? `\n${RESTRICTED_TOOLTIP}` : "";
    const click = "\nClick for the diffill menu.";
    const make = (text: string, tooltip: string, error = false): StatusItem => ({
        text,
        tooltip: `${tooltip}${extra}${click}`,
        command: MENU_COMMAND,
        error,
    });
    switch (view.state) {
        case "starting":
            return make(`$(sync~spin) ${name}`, `diffill: starting the server${detail}`);
        case "loading": {
            const pct = view.percentage !== undefined ? ` ${Math.round(view.percentage)}%` : "";
            return make(`$(sync~spin) ${name}${pct}`, `diffill: loading the model${detail}`);
        }
        case "ready": {
            const latency = view.latencyMs !== undefined ? ` ${view.latencyMs} ms` : "";
            // the status bar has little room: the reason's details in parentheses go to the tooltip only
            const slow = view.slowReason ? `, slow: ${view.slowReason.replace(/\s*\(.*\)\s*$/, "")}` : "";
            const none = view.noneShown ? " (no completion shown)" : "";
            const tips = [`diffill: ready${detail}`];
            if (view.latencyMs !== undefined) {
                tips.push(`The last completion took ${view.latencyMs} ms${view.slowReason ? `; it was slow because ${view.slowReason}` : ""}.`);
            }
            if (view.noneShown) {
                tips.push("The last request showed no completion: the server's gates refused the model's fill, or there was nothing to fill.");
            }
            return make(`${icon("$(check)")} ${name}${latency}${none}${slow}`, tips.join("\n"));
        }
        case "busy":
            return make(`${icon("$(loading~spin)")} ${name}`, `diffill: completing${detail}`);
        case "disabled":
            return make(`$(circle-slash) ${name}`, "diffill: completions disabled");
        case "stopped":
            return make(`$(debug-stop) ${name}`, `diffill: server stopped${detail}`);
        case "error":
            return make("$(error) diffill", `diffill: error${detail}`, true);
    }
}
