// What the status bar item says. The server reports its state with the `diffill/status`
// notification and the model load with `$/progress`; the extension adds its own states
// (starting, stopped, disabled). Plain functions, tested under node.

/** Params of the `diffill/status` notification. */
export interface ServerStatus {
    state: "loading" | "ready" | "busy" | "error";
    message?: string;
    latency_ms?: number | null;
}

export type StatusState = ServerStatus["state"] | "starting" | "stopped" | "disabled";

export interface StatusView {
    state: StatusState;
    message: string;
    latencyMs?: number;
    /** Model load progress, 0-100, while loading. */
    percentage?: number;
}

export interface StatusItem {
    text: string;
    tooltip: string;
    /** Command run on click: the log for errors, the enable/disable toggle otherwise. */
    command: "diffill.showLog" | "diffill.toggle";
    error: boolean;
}

export const STATUS_METHOD = "diffill/status";

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
    return {
        state: status.state,
        message: status.message ?? "",
        latencyMs: latency,
        percentage: status.state === "loading" ? view.percentage : undefined,
    };
}

export function statusItem(view: StatusView): StatusItem {
    const detail = view.message ? `: ${view.message}` : "";
    switch (view.state) {
        case "starting":
            return item("$(sync~spin) diffill", `diffill: starting the server${detail}`);
        case "loading": {
            const pct = view.percentage !== undefined ? ` ${Math.round(view.percentage)}%` : "";
            return item(`$(sync~spin) diffill${pct}`, `diffill: loading the model${detail}`);
        }
        case "ready": {
            const latency = view.latencyMs !== undefined ? ` ${view.latencyMs} ms` : "";
            return item(`$(check) diffill${latency}`, `diffill: ready${detail}\nClick to disable completions.`);
        }
        case "busy":
            return item("$(loading~spin) diffill", `diffill: completing${detail}`);
        case "disabled":
            return item("$(circle-slash) diffill", "diffill: completions disabled\nClick to enable.");
        case "stopped":
            return { ...item("$(debug-stop) diffill", `diffill: server stopped${detail}\nClick to open the log.`), command: "diffill.showLog" };
        case "error":
            return {
                text: "$(error) diffill",
                tooltip: `diffill: error${detail}\nClick to open the log.`,
                command: "diffill.showLog",
                error: true,
            };
    }
}

function item(text: string, tooltip: string): StatusItem {
    return { text, tooltip, command: "diffill.toggle", error: false };
}
