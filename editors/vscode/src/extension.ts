// The diffill extension: starts `diffill serve`, mirrors the settings to it, lets VS Code show its
// inline completions as ghost text, and shows the server's state in the status bar.
// All completion logic is in the server.
import { accessSync, constants, statSync } from "node:fs";
import { homedir } from "node:os";
import * as vscode from "vscode";
import {
    DidChangeConfigurationNotification,
    LanguageClient,
    LanguageClientOptions,
    ServerOptions,
    State,
    WorkDoneProgress,
    WorkDoneProgressCreateRequest,
} from "vscode-languageclient/node";
import { findServer, isFound, NOT_FOUND_SETTING } from "./lookup";
import { menuItems, statusSummary } from "./menu";
import { API_KEY_SECRET, configurationPayload, languageEnabled, readSettings, serverEnv, Settings } from "./settings";
import { applyServerStatus, isServerStatus, MENU_COMMAND, STATUS_METHOD, statusItem, StatusView, withAnswer } from "./status";
import { serverSettingsFrom } from "./trust";

const SECTION = "diffill";

let client: LanguageClient | undefined;
let log: vscode.LogOutputChannel;
let statusBar: vscode.StatusBarItem;
let view: StatusView = { state: "starting", message: "" };
let settings: Settings;
let secrets: vscode.SecretStorage;
let serverLine = "";

function isExecutable(file: string): boolean {
    try {
        accessSync(file, constants.X_OK);
        return statSync(file).isFile();
    } catch {
        return false;
    }
}

function currentSettings(): Settings {
    const config = vscode.workspace.getConfiguration(SECTION);
    // serverSettings: a workspace may set its harmless options, never its machine-only ones (trust.ts)
    return readSettings((key) =>
        key === "serverSettings" ? serverSettingsFrom(config.inspect(key), vscode.workspace.isTrusted) : config.get(key),
    );
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    log = vscode.window.createOutputChannel("diffill", { log: true });
    statusBar = vscode.window.createStatusBarItem("status", vscode.StatusBarAlignment.Right, 100);
    statusBar.name = "diffill";
    context.subscriptions.push(log, statusBar);
    settings = currentSettings();
    secrets = context.secrets;

    const setEnabled = (enable: boolean) =>
        vscode.workspace.getConfiguration(SECTION).update("enable", enable, vscode.ConfigurationTarget.Global);
    context.subscriptions.push(
        vscode.commands.registerCommand("diffill.enable", () => setEnabled(true)),
        vscode.commands.registerCommand("diffill.disable", () => setEnabled(false)),
        vscode.commands.registerCommand("diffill.toggle", () => setEnabled(!settings.enable)),
        vscode.commands.registerCommand("diffill.restart", () => restart()),
        vscode.commands.registerCommand("diffill.showLog", () => log.show(true)),
        vscode.commands.registerCommand(MENU_COMMAND, () => showMenu()),
        vscode.commands.registerCommand("diffill.showStatus", () =>
            vscode.window.showInformationMessage("diffill", {
                modal: true,
                detail: statusSummary(view, settings, !vscode.workspace.isTrusted, serverLine),
            }),
        ),
        vscode.commands.registerCommand("diffill.setRemoteApiKey", () => setRemoteApiKey()),
        vscode.commands.registerCommand("diffill.clearRemoteApiKey", async () => {
            await secrets.delete(API_KEY_SECRET);
            log.info("the remote server key was removed from VS Code's secret storage; restarting the server");
            await restart();
        }),
        vscode.workspace.onDidChangeConfiguration((event) => onConfigurationChanged(event)),
        vscode.workspace.onDidGrantWorkspaceTrust(() => {
            settings = currentSettings(); // the workspace's serverSettings count from now on
            return restart();
        }),
    );

    setView(view);
    statusBar.show();
    if (settings.enable) {
        await start();
    } else {
        setView({ state: "disabled", message: "" });
    }
}

export async function deactivate(): Promise<void> {
    await stop();
}

async function onConfigurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    if (!event.affectsConfiguration(SECTION)) {
        return;
    }
    const previous = settings;
    settings = currentSettings();
    if (event.affectsConfiguration(`${SECTION}.server`)) {
        log.info("server command changed: restarting the server");
        await restart();
        return;
    }
    if (settings.server.backend !== previous.server.backend || settings.server.remote.apiKeyEnv !== previous.server.remote.apiKeyEnv) {
        // the key travels in the server's environment, which is set when it starts
        log.info("backend or remote.apiKeyEnv changed: restarting the server");
        await restart();
        return;
    }
    if (settings.enable !== previous.enable) {
        if (settings.enable && client === undefined) {
            await start();
        } else {
            setView(settings.enable ? { ...view, state: client?.isRunning() ? "ready" : "starting" } : { ...view, state: "disabled" });
        }
    }
    if (client?.isRunning()) {
        await client.sendNotification(DidChangeConfigurationNotification.type, { settings: configurationPayload(settings) });
    }
}

async function showMenu(): Promise<void> {
    const items = menuItems(view, settings, !vscode.workspace.isTrusted);
    const item = statusItem(view, { restricted: !vscode.workspace.isTrusted });
    const picked = await vscode.window.showQuickPick(items, {
        title: `diffill: ${item.tooltip.split("\n")[0].replace(/^diffill: /, "")}`,
        placeHolder: "diffill",
    });
    if (picked !== undefined) {
        await vscode.commands.executeCommand(picked.command, ...(picked.args ?? []));
    }
}

async function setRemoteApiKey(): Promise<void> {
    const name = settings.server.remote.apiKeyEnv;
    const key = await vscode.window.showInputBox({
        title: "diffill: remote server key",
        prompt: `The key of ${settings.server.remote.url ?? "the remote server"}. It is kept in VS Code's secret storage and given to the diffill server as ${name}.`,
        password: true,
        ignoreFocusOut: true,
    });
    if (key === undefined || key.trim() === "") {
        return;
    }
    await secrets.store(API_KEY_SECRET, key.trim());
    log.info(`the remote server key is stored; restarting the server with it in ${name}`);
    await restart();
}

async function start(): Promise<void> {
    const found = findServer(settings, {
        pathVar: process.env.PATH ?? "",
        home: homedir(),
        folders: (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === "file").map((f) => f.uri.fsPath),
        trusted: vscode.workspace.isTrusted,
        isExecutable,
    });
    if (!isFound(found)) {
        log.error(`${found.message}\nLooked for: ${found.tried.join(", ")}`);
        serverLine = "";
        setView({ state: "error", message: found.message.replace(/^diffill: /, "") });
        vscode.window.showErrorMessage(found.message, "Open Settings", "Show log").then((choice) => {
            if (choice === "Open Settings") {
                vscode.commands.executeCommand("workbench.action.openSettings", NOT_FOUND_SETTING);
            } else if (choice === "Show log") {
                log.show(true);
            }
        });
        return;
    }
    const { command, args } = found;
    serverLine = `${command} ${args.join(" ")} (${found.via})`;
    const apiKey = await secrets.get(API_KEY_SECRET);
    const serverOptions: ServerOptions = {
        command,
        args,
        options: { env: { ...process.env, ...serverEnv(settings, apiKey) } },
    };
    const clientOptions: LanguageClientOptions = {
        documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
        initializationOptions: settings.server,
        outputChannel: log,
        middleware: {
            provideInlineCompletionItems: async (document, position, context, token, next) => {
                if (!settings.enable || !languageEnabled(settings, document.languageId)) {
                    return null;
                }
                const answer = await next(document, position, context, token);
                // recorded in any state: the answer may come before the server's "ready" after the fill
                if (!token.isCancellationRequested) {
                    const items = Array.isArray(answer) ? answer : (answer?.items ?? []);
                    setView(withAnswer(view, items.length > 0));
                }
                return answer;
            },
            // VS Code shows the server's answers as ghost text; its plain-completion fallback
            // would repeat them in the suggest widget.
            provideCompletionItem: () => null,
        },
    };
    const next = new LanguageClient("diffill", "diffill", serverOptions, clientOptions);
    client = next;
    next.onNotification(STATUS_METHOD, (params: unknown) => {
        if (isServerStatus(params)) {
            if (params.state === "error") {
                log.error(params.message ?? "server error");
            }
            setView(settings.enable ? applyServerStatus(view, params) : { ...applyServerStatus(view, params), state: "disabled" });
        }
    });
    next.onDidChangeState((change) => {
        if (change.newState === State.Stopped && client === next) {
            setView({ state: "stopped", message: "the server exited" });
        }
    });
    setView({ state: "starting", message: `${command} ${args.join(" ")}` });
    log.info(`starting ${command} ${args.join(" ")} (found through ${found.via})`);
    try {
        await next.start();
    } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        log.error(`the server did not start: ${message}`);
        setView({ state: "error", message: `the server did not start (${command}): ${message}` });
        return;
    }
    const info = next.initializeResult?.serverInfo;
    log.info(`connected to ${info?.name ?? "the server"} ${info?.version ?? ""}`);
    // Model loading is reported with $/progress: show it in the status item.
    next.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
        const progress = next.onProgress(WorkDoneProgress.type, token, (value) => {
            if (value.kind === "end") {
                progress.dispose();
                return;
            }
            if (view.state === "starting" || view.state === "loading") {
                setView({
                    state: "loading",
                    message: value.message ?? (value.kind === "begin" ? value.title : view.message),
                    percentage: value.percentage ?? view.percentage,
                    latencyMs: view.latencyMs,
                });
            }
        });
    });
    if (view.state === "starting") {
        setView({ state: settings.enable ? "ready" : "disabled", message: "" });
    }
}

async function stop(): Promise<void> {
    const old = client;
    client = undefined;
    if (old !== undefined) {
        try {
            await old.stop(5000);
        } catch (error) {
            log.warn(`stopping the server: ${String(error)}`);
        }
    }
}

async function restart(): Promise<void> {
    await stop();
    if (settings.enable) {
        await start();
    } else {
        setView({ state: "disabled", message: "" });
    }
}

function setView(next: StatusView): void {
    view = next;
    const item = statusItem(view, { restricted: !vscode.workspace.isTrusted });
    statusBar.text = item.text;
    statusBar.tooltip = item.tooltip;
    statusBar.command = item.command;
    statusBar.backgroundColor = item.error ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
}
