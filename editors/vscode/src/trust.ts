// What a workspace may not choose. A folder's .vscode/settings.json comes with the code someone
// hands you: it must not pick the program that runs (server command, Python, environment), where
// your code is sent (the remote backend, its URL, key variable and TLS trust), or the worker socket
// the server talks to. package.json makes those settings machine-scoped (VS Code then ignores
// workspace values) and lists them as restricted in untrusted workspaces; diffill.serverSettings
// stays per workspace for the harmless options, so its machine-only keys are taken here from the
// user's settings alone. Plain functions with no `vscode` import, so the unit tests run them under node.

/** Keys of diffill.serverSettings that only the user's own settings may set. */
export const MACHINE_ONLY_SERVER_SETTINGS: readonly string[] = ["workerSocket", "allowDownload", "workerNice", "backend", "remote"];

/** What VS Code's `WorkspaceConfiguration.inspect` gives for one setting (the fields used here). */
export interface Inspected {
    defaultValue?: unknown;
    globalValue?: unknown;
    workspaceValue?: unknown;
    workspaceFolderValue?: unknown;
}

function record(value: unknown): Record<string, unknown> {
    return typeof value === "object" && value !== null && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : {};
}

/**
 * diffill.serverSettings as the server should get it: the user's values, then the workspace's on
 * top of them, except that a workspace never sets a machine-only key, and an untrusted workspace
 * sets nothing at all.
 */
export function serverSettingsFrom(inspected: Inspected | undefined, trusted: boolean): Record<string, unknown> {
    const user = { ...record(inspected?.defaultValue), ...record(inspected?.globalValue) };
    if (!trusted) {
        return user;
    }
    const workspace = Object.entries({ ...record(inspected?.workspaceValue), ...record(inspected?.workspaceFolderValue) })
        .filter(([key]) => !MACHINE_ONLY_SERVER_SETTINGS.includes(key));
    return { ...user, ...Object.fromEntries(workspace) };
}
