// Drives VS Code (code-server) in headless Chromium the way a user would, and prints one JSON line
// with what it saw. Run by tests/test_editor_vscode.py.
//   node type-and-accept.mjs '{"url", "file", "mode", "line", "type", "screenshot", "timeoutMs"}'
// mode "complete" (default): open the file, go to the end of `line`, type `type`, wait for the ghost
//   text, take the screenshot, accept with Tab, save, and wait until the file on disk changes.
// mode "error": open the file, wait for the status item to turn red, click it, read the log it opens.
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

async function complete(page) {
    await page.keyboard.press("Control+G");
    await page.waitForSelector(".quick-input-widget input");
    await page.keyboard.type(`${job.line}`, { delay: 20 });
    await page.keyboard.press("Enter");
    await page.keyboard.press("End");
    await page.keyboard.type(job.type, { delay: 60 });
    step("typed");

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

    // Turn completions off from the command palette: the status item says so.
    await page.keyboard.press("F1");
    await page.waitForSelector(".quick-input-widget input");
    await page.keyboard.type("diffill: Disable completions", { delay: 10 });
    await page.waitForSelector('.quick-input-list .monaco-list-row[aria-label*="Disable completions"]');
    await page.keyboard.press("Enter");
    await page.waitForFunction(
        (sel) => /completions disabled/.test(document.querySelector(sel)?.getAttribute("aria-label") ?? ""),
        STATUS,
    );
    result.statusAfterDisable = await page.locator(STATUS).getAttribute("aria-label");
    step("disabled");
}

async function showError(page) {
    await page.waitForSelector(`${STATUS}.error-kind`);
    result.statusText = visibleText(await page.locator(STATUS).innerText()).trim();
    step("error status");
    await page.locator(STATUS).click();
    const output = ".part.panel .monaco-editor .view-lines";
    await page.waitForFunction((sel) => /did\snot\sstart/.test(document.querySelector(sel)?.textContent ?? ""), output);
    result.log = visibleText(await page.locator(output).first().textContent());
    step("log shown");
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
    await (job.mode === "error" ? showError(page) : complete(page));
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
