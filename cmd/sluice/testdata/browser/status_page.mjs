// Drives chromium against sluice's status page for browser_test.go.
//
//   node status_page.mjs URL TOKEN BACKEND SCREENSHOT
//
// Loads the page (the token as basic authentication's password), waits
// until BACKEND's row shows "up" and prints "up". Then it waits for a line
// on stdin (the test has killed BACKEND), waits for the page, refreshing
// itself, to show the row "down", saves a screenshot and prints "down".
import puppeteer from "puppeteer-core";
import { createInterface } from "node:readline";

const [url, token, backend, screenshot] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Root (as in CI) cannot use chromium's sandbox; the page is ours.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  page.on("pageerror", e => console.error("page error:", e.message));
  await page.setViewport({ width: 1200, height: 700 });
  await page.authenticate({ username: "operator", password: token });
  await page.goto(url, { waitUntil: "load" });
  const row = `tr[data-backend="${backend}"]`;
  await page.waitForSelector(`${row}.up`, { timeout: 10000 });
  console.log("up");
  await lines.next();
  await page.waitForSelector(`${row}.down`, { timeout: 15000 });
  await page.screenshot({ path: screenshot, fullPage: true });
  const text = await page.$eval(row, r => r.innerText.replace(/\s+/g, " "));
  console.log("down " + text);
} finally {
  await browser.close();
}
