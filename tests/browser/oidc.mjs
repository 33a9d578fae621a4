// Signing in through an OpenID provider in a real browser (SPEC §10), for
// tests/oidc.rs: Debian's chromium opens a page behind gatehouse, is sent
// to gatehouse's sign-in page, clicks "Sign in with <provider>", fills in
// the provider's login form and confirms its consent page, and lands back
// on the page it asked for, signed in. The sign-in page, with its
// provider button, is saved as a screenshot. Prints each step, then
// `RESULT {"url", "body", "button"}` (the page's text: the backend's echo).
//
//   node oidc.mjs --page URL --button "Sign in with X" --login NAME
//                 --chromium PATH --screenshot FILE
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { launch, newContext } from "./chromium.mjs";

const { values: args } = parseArgs({
  options: {
    page: { type: "string" },
    button: { type: "string" },
    login: { type: "string" },
    chromium: { type: "string" },
    screenshot: { type: "string" },
  },
});

const step = (what) => console.log(`step: ${what}`);
const browser = await launch(args.chromium);
try {
  const ctx = await newContext(browser, { width: 800, height: 700 }, 20000);
  const page = await ctx.newPage();
  step(`open ${args.page}`);
  await page.goto(args.page);
  step(`on ${page.url()}: click "${args.button}"`);
  mkdirSync(dirname(args.screenshot), { recursive: true });
  await page.screenshot({ path: args.screenshot });
  const button = page.getByRole("link", { name: args.button });
  const buttonText = await button.textContent();
  await button.click();
  await page.waitForSelector("input[name=login]");
  step(`at the provider (${new URL(page.url()).origin}): sign in as ${args.login}`);
  await page.fill("input[name=login]", args.login);
  await page.fill("input[name=password]", "any password");
  await page.click("button[type=submit]");
  await page.waitForSelector("button[type=submit]");
  step("consent: Continue");
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(args.page)),
    page.click("button[type=submit]"),
  ]);
  step(`back on ${page.url()}`);
  const body = await page.textContent("body");
  console.log(`RESULT ${JSON.stringify({ url: page.url(), body, button: buttonText })}`);
} finally {
  await browser.close();
}
