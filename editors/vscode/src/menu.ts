// The menu a click on the status item opens (a QuickPick): turn completions on or off, restart the
// server, open the log, show the model and the status, and, in Restricted Mode, manage the folder's
// trust. Plain functions with no `vscode` import, so the unit tests run them under node.
import { Settings } from "./settings";
import { StatusView } from "./status";

export interface MenuItem {
    label: string;
    description?: string;
    /** The command the item runs, with its arguments. */
    command: string;
    args?: unknown[];
}

/** The model as the user would name it: the remote server's, the configured checkpoint or the embedded default. */
export function modelName(settings: Settings): string {
    const server = settings.server;
    if (server.backend === "remote") {
        return `${server.remote.model ?? "the first model"} on ${server.remote.url ?? "(no diffill.remote.url set)"}`;
    }
    return server.model ?? "the embedded default model";
}

/** One line per fact, for the "model and status" message. */
export function statusSummary(view: StatusView, settings: Settings, restricted: boolean, server: string): string {
    const lines = [
        `state: ${view.state}${view.message ? ` (${view.message})` : ""}`,
        `model: ${modelName(settings)}`,
    ];
    if (settings.server.backend === "local") {
        lines.push(`device: ${settings.server.device}, dtype: ${settings.server.dtype}`);
    }
    if (view.latencyMs !== undefined) {
        lines.push(`last completion: ${view.latencyMs} ms${view.slowReason ? `, slow: ${view.slowReason}` : ""}`);
    }
    if (view.noneShown) {
        lines.push("last request: no completion shown");
    }
    lines.push(`server: ${server || "not started"}`);
    if (restricted) {
        lines.push("Restricted Mode: the folder's own diffill settings are ignored until you trust it");
    }
    return lines.join("\n");
}

export function menuItems(view: StatusView, settings: Settings, restricted: boolean): MenuItem[] {
    const items: MenuItem[] = [];
    if (view.state === "error" || view.state === "stopped") {
        items.push({ label: "$(output) Show log", description: "why the server stopped or failed", command: "diffill.showLog" });
    }
    items.push(
        settings.enable
            ? { label: "$(circle-slash) Disable completions", command: "diffill.disable" }
            : { label: "$(check) Enable completions", command: "diffill.enable" },
        { label: "$(debug-restart) Restart server", command: "diffill.restart" },
    );
    if (view.state !== "error" && view.state !== "stopped") {
        items.push({ label: "$(output) Show log", command: "diffill.showLog" });
    }
    items.push({ label: "$(info) Show model and status", description: modelName(settings), command: "diffill.showStatus" });
    if (restricted) {
        items.push({
            label: "$(shield) Manage workspace trust",
            description: "Restricted Mode: the folder's own diffill settings are ignored",
            command: "workbench.trust.manage",
        });
    }
    items.push({ label: "$(gear) Open settings", command: "workbench.action.openSettings", args: ["diffill"] });
    return items;
}
