// The page at `/` of `ethos serve`, driven in headless Chromium by playwright-core as a user
// would drive it: it loads, a message streams a reply, a slider change sends the control
// vector and changes the reply, the side-by-side view shows steered | unsteered. Prints one
// JSON object of what the DOM shows, for the Rust test to compare with the API's answers.
//
//   NODE_PATH=DIR/node_modules node tests/clients/page_test.cjs BASE_URL VECTOR_NAME [PALETTE_NAME]
"use strict";
const { chromium } = require("playwright-core");

(async () => {
  const [base, vector] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  const out = { errors: [] };
  try {
    const page = await browser.newPage();
    page.on("console", (m) => { if (m.type() === "error") out.errors.push(m.text()); });
    page.on("pageerror", (e) => out.errors.push(String(e)));
    const open = async () => {
      await page.goto(base + "/");
      await page.waitForSelector('body[data-state="ready"]', { timeout: 30000 });
      await page.fill("#temperature", "0");
      await page.fill("#max_tokens", "12");
    };
    const ask = async (text) => {
      await page.fill("#prompt", text);
      await page.click("#send");
      await page.waitForSelector('body[data-state="done"]', { timeout: 120000 });
    };
    const reply = (kind) => page.locator(`.reply[data-kind="${kind}"] .text`).last().textContent();

    await open();
    out.model = await page.textContent("#model");
    out.sliders = await page.locator('.vector input[type="range"]').count();
    await ask("Name a colour.");
    out.plain = await reply("plain");
    out.titles = await page.locator(".tok[title]").count();
    out.first_title = await page.locator(".tok[title]").first().getAttribute("title");
    out.tokens = await page.locator(".tok").count();

    // A fresh conversation, with the vector's slider moved and the side-by-side view on.
    await open();
    const slider = page.locator(`.vector input[data-name="${vector}"]`);
    await slider.fill("4");
    out.slider_label = await page.locator(".vector output").first().textContent();
    await page.check("#compare");
    await ask("Name a colour.");
    out.steered = await reply("steered");
    out.unsteered = await reply("unsteered");
    out.steered_title = await page.locator('.reply[data-kind="steered"] h3').last().textContent();

    // A fresh conversation decoded with a palette (best-of-n, 4 candidates), no vector.
    if (process.argv[4]) {
      await open();
      await page.selectOption("#palette", process.argv[4]);
      await page.selectOption("#palette_mode", "best-of-n");
      await page.fill("#palette_candidates", "4");
      await ask("Name a colour.");
      out.palette_reply = await reply("steered");
      out.palette_note = await page.locator(".palette-note").last().textContent();
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
