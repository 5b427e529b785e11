// Drives VS Code (code-server) in headless Chromium the way a user would, and prints one JSON line
// with what it saw. Run by tests/test_editor_vscode.py.
//   node type-and-accept.mjs '{"url", "file", "mode", "line", "type", "screenshot", "timeoutMs", ...}'
// mode "complete" (default): open the file, go to the end of `line`, type `type`, wait for the ghost
//   text, take the screenshot, accept with Tab, save, and wait until the file on disk changes; then
//   click the status item, read its menu (screenshot `menuScreenshot`) and pick "Disable completions".
// mode "answer": type like "complete", wait until the server has answered after the typing (the status
//   item shows a latency, with "no completion shown" when nothing was), take the screenshot, and
//   report the ghost text if there is one.
// mode "error": open the file, wait for the status item to turn red, read the notifications, click
//   the item, pick "Show log" from its menu, and read the log until it matches `logPattern`.
// mode "restricted": open the file in an untrusted folder, wait for the status item to say
//   "restricted", take the screenshot, click it and read its menu.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const job = JSON.parse(process.argv[2]);
const started = Date.now();
const result = { ok: false, steps: [] };
const step = (name) => result.steps.push(`${((Date.now() - started) / 1000).toFixed(1)}s ${name}`);
const visibleText = (text) => (text ?? "").replace(/\u00a0/g, " ");

const STATUS = '[id="diffill.diffill.status"]';
const GHOST = ".monaco-editor .ghost-text-decoration";

async function openFile(page) {
    await page.goto(job.url);
    await page.waitForSelector(".monaco-workbench .part.sidebar");
    step("workbench");
    // Record every state the status item goes through (its aria-label holds the text and tooltip).
    await page.evaluate((sel) => {
        window.diffillStatusSeen = [];
        setInterval(() => {
            const label = document.querySelector(sel)?.getAttribute("aria-label");
            if (label && window.diffillStatusSeen.at(-1) !== label) {
                window.diffillStatusSeen.push(label);
            }
        }, 50);
    }, STATUS);
    const name = job.file.split("/").pop();
    await page.keyboard.press("Control+P");
    await page.waitForSelector(".quick-input-widget input");
    await page.keyboard.type(name, { delay: 20 });
    await page.waitForSelector(`.quick-input-list .monaco-list-row[aria-label*="${name}"]`);
    await page.keyboard.press("Enter");
    await page.waitForSelector(".editor-instance .monaco-editor .view-lines .view-line");
    step("file open");
    // The extension is active once its status item is there, and connected once it stops saying "starting".
    await page.waitForSelector(STATUS);
    if (job.mode !== "error") {
        await page.waitForFunction(
            (sel) => !/starting the server/.test(document.querySelector(sel)?.getAttribute("aria-label") ?? "starting the server"),
            STATUS,
        );
    }
    step(`status: ${await page.locator(STATUS).getAttribute("aria-label")}`);
}

const statusLabel = async (page) => visibleText(await page.locator(STATUS).getAttribute("aria-label"));

async function notifications(page) {
    return page.$$eval(".notifications-toasts .notification-list-item-message", (els) => els.map((el) => el.textContent ?? ""));
}

// Clicks the status item and returns the labels of the menu it opens (the QuickPick stays open).
async function openMenu(page) {
    await page.locator(STATUS).click();
    await page.waitForSelector(".quick-input-widget .quick-input-list .monaco-list-row");
    await page.waitForTimeout(200);
    const menu = await page.$$eval(".quick-input-widget .quick-input-list .monaco-list-row", (rows) =>
        rows.map((row) => row.querySelector(".label-name")?.textContent ?? row.getAttribute("aria-label") ?? ""),
    );
    result.menuTitle = visibleText(await page.locator(".quick-input-widget .quick-input-title").textContent().catch(() => ""));
    step(`menu: ${menu.join(" | ")}`);
    return menu.map(visibleText);
}

async function pickFromMenu(page, label) {
    await page.keyboard.type(label, { delay: 10 });
    await page.waitForSelector(`.quick-input-widget .quick-input-list .monaco-list-row[aria-label*="${label}"]`);
    await page.keyboard.press("Enter");
}

async function typeAtLine(page) {
    await page.keyboard.press("Control+G");
    await page.waitForSelector(".quick-input-widget input");
    await page.keyboard.type(`${job.line}`, { delay: 20 });
    await page.keyboard.press("Enter");
    await page.keyboard.press("End");
    await page.keyboard.type(job.type, { delay: 60 });
    step("typed");
}

async function complete(page) {
    await typeAtLine(page);
    await page.waitForSelector(GHOST, { state: "visible" });
    await page.waitForTimeout(300); // let the rest of the decorations render
    // The first line of the ghost text may be split over several decorations (one per token colour).
    result.ghost = visibleText(await page.$$eval(GHOST, (els) => els.map((el) => el.textContent).join("")));
    // The cursor's line as drawn: the typed text followed by the ghost text.
    result.lineShown = visibleText(
        await page.evaluate((sel) => document.querySelector(sel)?.closest(".view-line")?.textContent, GHOST),
    );
    result.statusText = visibleText(await page.locator(STATUS).innerText()).trim();
    step("ghost text");
    if (job.screenshot) {
        await page.screenshot({ path: job.screenshot });
    }

    const before = readFileSync(job.file, "utf8");
    await page.keyboard.press("Tab");
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 0, GHOST);
    step("accepted");
    await page.keyboard.press("Control+S");
    const deadline = Date.now() + 15000;
    while (readFileSync(job.file, "utf8") === before && Date.now() < deadline) {
        await page.waitForTimeout(100);
    }
    step("saved");

    // A click on the status item opens the menu; its "Disable completions" turns them off.
    result.statusBeforeMenu = await statusLabel(page);
    result.menu = await openMenu(page);
    if (job.menuScreenshot) {
        await page.screenshot({ path: job.menuScreenshot });
    }
    result.statusAfterClick = await statusLabel(page);
    await pickFromMenu(page, "Disable completions");
    await page.waitForFunction(
        (sel) => /completions disabled/.test(document.querySelector(sel)?.getAttribute("aria-label") ?? ""),
        STATUS,
    );
    result.statusAfterDisable = await page.locator(STATUS).getAttribute("aria-label");
    step("disabled");
}

// After typing, waits until the server has answered: a latency in the status item, and either ghost
// text or "no completion shown".
async function answer(page) {
    // as a user would: wait until the model has loaded (the spinner is gone), then type
    await page.waitForFunction(
        (sel) => /diffill: ready/.test(document.querySelector(sel)?.getAttribute("aria-label") ?? ""),
        STATUS,
    );
    step("model ready");
    await typeAtLine(page);
    await page.waitForFunction(
        ([sel, ghost]) => {
            const label = document.querySelector(sel)?.getAttribute("aria-label") ?? "";
            return /diffill \d+ ms/.test(label) && (/no completion shown/.test(label) || document.querySelector(ghost) !== null);
        },
        [STATUS, GHOST],
    );
    await page.waitForTimeout(500); // let the ghost text render, if any
    result.ghost = visibleText(await page.$$eval(GHOST, (els) => els.map((el) => el.textContent).join("")));
    result.statusText = visibleText(await page.locator(STATUS).innerText()).trim();
    result.statusLabel = await statusLabel(page);
    step(`answered: ${result.statusText}`);
    if (job.screenshot) {
        await page.screenshot({ path: job.screenshot });
    }
}

async function showError(page) {
    await page.waitForSelector(`${STATUS}.error-kind`);
    result.statusText = visibleText(await page.locator(STATUS).innerText()).trim();
    result.statusLabel = await statusLabel(page);
    step("error status");
    // every message the error brings has arrived by then
    await page.waitForSelector(".notifications-toasts .notification-list-item-message");
    await page.waitForTimeout(job.settleMs ?? 3000);
    result.notifications = await notifications(page);
    await page.locator(STATUS).hover();
    await page.waitForTimeout(1500); // the tooltip with the reason
    if (job.screenshot) {
        await page.screenshot({ path: job.screenshot });
    }
    result.menu = await openMenu(page);
    await pickFromMenu(page, "Show log");
    const output = ".part.panel .monaco-editor .view-lines";
    const pattern = job.logPattern ?? "did\\snot\\sstart";
    await page.waitForFunction(
        ([sel, source]) => new RegExp(source).test(document.querySelector(sel)?.textContent ?? ""),
        [output, pattern],
    );
    result.log = visibleText(await page.locator(output).first().textContent());
    step("log shown");
}

async function restricted(page) {
    await page.waitForFunction((sel) => /restricted/.test(document.querySelector(sel)?.getAttribute("aria-label") ?? ""), STATUS);
    await page.waitForFunction(
        (sel) => !/starting the server|loading the model/.test(document.querySelector(sel)?.getAttribute("aria-label") ?? ""),
        STATUS,
    );
    result.statusText = visibleText(await page.locator(STATUS).innerText()).trim();
    result.statusLabel = await statusLabel(page);
    step("restricted status");
    await page.locator(STATUS).hover();
    await page.waitForTimeout(1500); // the tooltip
    if (job.screenshot) {
        await page.screenshot({ path: job.screenshot });
    }
    result.menu = await openMenu(page);
}

const browser = await chromium.launch({
    executablePath: job.chromium ?? "/usr/bin/chromium",
    args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ],
});
const page = await (await browser.newContext({ viewport: { width: 1100, height: 620 } })).newPage();
page.setDefaultTimeout(job.timeoutMs ?? 120000);
try {
    await openFile(page);
    const modes = { complete, answer, error: showError, restricted };
    await modes[job.mode ?? "complete"](page);
    result.statusSeen = await page.evaluate(() => window.diffillStatusSeen);
    result.ok = true;
} catch (error) {
    result.error = String(error?.stack ?? error);
    if (job.screenshot) {
        await page.screenshot({ path: job.screenshot.replace(/\.png$/, "-failure.png") }).catch(() => {});
    }
} finally {
    await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
