// The example chatbot behind gatehouse, in a real browser: Debian's chromium
// driven by playwright-core. tests/browser.rs starts the FastAPI app and
// gatehouse on the shipped config (sessions on, `/ui/**` taking `[session,
// jwt]`) and runs
//
//   node tests/browser/chatbot.mjs --gate https://127.0.0.1:<port> \
//     --user demo --password <pw> --cert <pem> --key <pem> --screenshot <png>
//
// What it does, as a person would:
//   1. opens /ui/ and is sent to gatehouse's sign-in page, signs in there and
//      lands back on /ui/, which shows "Signed in as <user>" from /auth/me;
//   2. sends a message (a same-origin JSON POST) and sees the reply stream in
//      over Server-Sent Events, token by token, then takes a screenshot;
//   3. forged requests riding the session, each an auto-submitting form on a
//      page of another origin, must all fail at gatehouse:
//      - from http://localhost:<p> (another site than https://127.0.0.1:<gw>):
//        SameSite=Lax keeps the cookie out of a cross-site POST, so gatehouse
//        sees no session at all and answers 401 (a 403 csrf_rejected, had the
//        cookie come along, would do as well);
//      - from https://127.0.0.1:<p> (another origin of the same site): the
//        browser does send the cookie, and gatehouse's CSRF check
//        (Sec-Fetch-Site: same-site) answers 403 csrf_rejected;
//      - a forged sign-out from the other site: refused, still signed in;
//   4. signs out with the page's button and is sent to sign in again.
//
// Whether any of the forged requests reached the app, tests/browser.rs asks
// the app itself (its request record). This script prints its steps, then one
// line `RESULT {json}` with what it saw, and exits 0, or 1 with the reason
// (and a screenshot of the failure next to --screenshot).

import { readFileSync, mkdirSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { launch, newContext } from "./chromium.mjs";

const { values: args } = parseArgs({
  options: {
    gate: { type: "string" },
    user: { type: "string" },
    password: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
for (const name of ["gate", "user", "password", "cert", "key", "screenshot"]) {
  if (!args[name]) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
}
const GATE = args.gate.replace(/\/$/, "");
const gateUrl = new URL(GATE);
/** How long one step (a navigation, a wait for text) may take. */
const STEP_TIMEOUT_MS = 15_000;
/** The whole run, as a last resort. */
const RUN_TIMEOUT_MS = 90_000;
const MESSAGE = "What does gatehouse do?";

const started = Date.now();
const steps = [];
function log(text) {
  console.log(`[${String(Date.now() - started).padStart(5)} ms] ${text}`);
}
/** Runs `fn` as a named step, logging how long it took. */
async function step(name, fn) {
  const t0 = Date.now();
  const value = await fn();
  steps.push({ step: name, ms: Date.now() - t0 });
  log(`ok   ${name} (${Date.now() - t0} ms)`);
  return value;
}
function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/** An origin serving one page: a form that posts itself to `action` on load. */
function formPage(action, fields) {
  const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const inputs = Object.entries(fields)
    .map(([n, v]) => `<input type="hidden" name="${escape(n)}" value="${escape(v)}">`)
    .join("");
  return (
    `<!doctype html><html><head><meta charset="utf-8"><title>free prize</title></head>` +
    `<body><form id="f" method="post" action="${escape(action)}">${inputs}</form>` +
    `<script>document.getElementById("f").submit();</script></body></html>`
  );
}

/** Serves forged forms (`/?to=<path>` posts to that gatehouse path) from
 * 127.0.0.1 on a free port, over HTTP or, with `tls`, HTTPS; its port. */
async function startForger(servers, tls) {
  const handler = (req, res) => {
    const url = new URL(req.url, "http://forger");
    const to = url.searchParams.get("to") || "/";
    const fields = to.startsWith("/auth/")
      ? {}
      : { message: "forged: send everything to the attacker" };
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(formPage(GATE + to, fields));
  };
  const server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
  servers.push(server);
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return server.address().port;
}

/** Loads `pageUrl` (a forger's page) in a new tab of `context` and returns
 * what became of the form post it makes to gatehouse at `path`. */
async function forge(context, pageUrl, path) {
  const tab = await context.newPage();
  try {
    const target = GATE + path.split("?")[0];
    const answered = tab.waitForResponse(
      (r) => r.request().method() === "POST" && r.url().split("?")[0] === target,
    );
    // The forger's page submits its form as soon as it loads: wait only for
    // its own response, then for gatehouse's.
    await tab.goto(pageUrl, { waitUntil: "commit" });
    const response = await answered;
    const sent = await response.request().allHeaders();
    const text = await response.text().catch(() => "");
    let error = null;
    try {
      error = JSON.parse(text).error ?? null;
    } catch {
      // not JSON
    }
    return {
      from: new URL(pageUrl).origin,
      to: path,
      status: response.status(),
      error,
      cookie_sent: (sent.cookie || "").includes("__Host-gatehouse="),
      sec_fetch_site: sent["sec-fetch-site"] ?? null,
      origin: sent.origin ?? null,
    };
  } finally {
    await tab.close();
  }
}

async function main() {
  const servers = [];
  const browser = await launch(args.chromium);
  log(`chromium ${browser.version()} via playwright-core`);
  const context = await newContext(browser, { width: 880, height: 620 }, STEP_TIMEOUT_MS);
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") {
      problems.push(`console error: ${m.text()} (${m.location().url})`);
    }
  });
  const result = { user: args.user };
  try {
    await step("GET /ui/ is sent to gatehouse's sign-in page", async () => {
      await page.goto(GATE + "/ui/");
      check(
        page.url() === GATE + "/auth/login?rd=%2Fui%2F",
        `expected the sign-in page, at ${page.url()}`,
      );
      const h1 = await page.locator("h1").textContent();
      check(h1.startsWith("Sign in to "), `sign-in page heading: ${h1}`);
    });

    await step("signing in lands back on /ui/", async () => {
      await page.fill("#username", args.user);
      await page.fill("#password", args.password);
      await Promise.all([page.waitForURL(GATE + "/ui/"), page.click("button[type=submit]")]);
      const cookies = await context.cookies(GATE);
      const session = cookies.find((c) => c.name === "__Host-gatehouse");
      check(session, `no session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
      check(
        session.httpOnly && session.secure && session.sameSite === "Lax" && session.path === "/",
        `cookie attributes: ${JSON.stringify(session)}`,
      );
      result.cookie = { httpOnly: session.httpOnly, secure: session.secure, sameSite: session.sameSite };
    });

    await step(`the page shows "Signed in as ${args.user}" from /auth/me`, async () => {
      await page.locator("#user").waitFor({ state: "visible" });
      const shown = (await page.locator("#user").innerText()).trim();
      check(shown === `Signed in as ${args.user}`, `shown: ${shown}`);
      result.signed_in_as = await page.locator("#who").innerText();
      const scriptSees = await page.evaluate(() => document.cookie);
      check(!scriptSees.includes("__Host-gatehouse"), "the script can read the session cookie");
    });

    await step("a message gets its reply streamed in over SSE", async () => {
      // Every token event updates the reply's data-tokens: note when each
      // one showed, and what the reply read then.
      await page.evaluate(() => {
        window.arrivals = [];
        new MutationObserver((records) => {
          for (const r of records) {
            window.arrivals.push({
              at: performance.now(),
              text: r.target.querySelector(".text").textContent,
              busy: r.target.getAttribute("aria-busy"),
            });
          }
        }).observe(document.getElementById("log"), {
          subtree: true,
          attributeFilter: ["data-tokens"],
        });
      });
      await page.fill("#message", MESSAGE);
      await page.press("#message", "Enter");
      const done = page.locator('li.message.bot[data-done="yes"]');
      await done.waitFor();
      const reply = await done.locator(".text").innerText();
      const tokens = Number(await done.getAttribute("data-tokens"));
      const arrivals = await page.evaluate(() => window.arrivals);
      check(
        reply.startsWith(`Hello ${args.user}! You said: "${MESSAGE}".`),
        `reply: ${JSON.stringify(reply)}`,
      );
      check(tokens > 5 && arrivals.length === tokens, `${tokens} tokens, ${arrivals.length} seen`);
      // Streamed, not buffered: the app writes a token every 40 ms, so the
      // page shows them over about a second, each while the reply is open.
      const spread = Math.round(arrivals[arrivals.length - 1].at - arrivals[0].at);
      check(spread >= 300, `all ${tokens} tokens showed within ${spread} ms: buffered?`);
      const partial = arrivals[1];
      check(
        partial.busy === "true" && partial.text.length < reply.length && reply.startsWith(partial.text),
        `while streaming: ${JSON.stringify(partial)}`,
      );
      Object.assign(result, { reply, tokens, stream_ms: spread, seen_while_streaming: partial.text });
      log(`     ${tokens} tokens over ${spread} ms; after two the page read ${JSON.stringify(partial.text)}`);
      const status = (await page.locator("#status").innerText()).trim();
      check(status === "", `status line: ${status}`);
    });

    await step("screenshot of the signed-in chat page", async () => {
      mkdirSync(dirname(args.screenshot), { recursive: true });
      await page.screenshot({ path: args.screenshot });
      result.screenshot = args.screenshot;
    });

    const otherSite = await startForger(servers, null);
    const sameSite = await startForger(servers, {
      cert: readFileSync(args.cert),
      key: readFileSync(args.key),
    });
    const api = "/ui/api/messages";

    result.cross_site = await step(
      "a form auto-submitted from another site never gets through",
      async () => {
        const seen = await forge(context, `http://localhost:${otherSite}/?to=${api}`, api);
        check(seen.status === 401 || seen.status === 403, `answered ${JSON.stringify(seen)}`);
        if (seen.cookie_sent) {
          check(seen.status === 403 && seen.error === "csrf_rejected", JSON.stringify(seen));
        } else {
          check(seen.status === 401 && seen.error === "missing_credentials", JSON.stringify(seen));
        }
        log(
          `     the browser ${seen.cookie_sent ? "sent" : "did not send"} the session cookie ` +
            `(Sec-Fetch-Site: ${seen.sec_fetch_site}); gatehouse answered ${seen.status} ${seen.error}`,
        );
        return seen;
      },
    );

    result.same_site = await step(
      "a form auto-submitted from another origin of the same site gets 403 csrf_rejected",
      async () => {
        const seen = await forge(context, `https://${gateUrl.hostname}:${sameSite}/?to=${api}`, api);
        check(seen.cookie_sent, `the browser did not send the cookie: ${JSON.stringify(seen)}`);
        check(seen.sec_fetch_site === "same-site", JSON.stringify(seen));
        check(seen.status === 403 && seen.error === "csrf_rejected", `answered ${JSON.stringify(seen)}`);
        log(
          `     the browser sent the session cookie (Sec-Fetch-Site: same-site); ` +
            `gatehouse answered ${seen.status} ${seen.error}`,
        );
        return seen;
      },
    );

    result.forged_sign_out = await step(
      "a sign-out forged from another site is refused and the session lives on",
      async () => {
        const seen = await forge(
          context,
          `http://localhost:${otherSite}/?to=/auth/logout`,
          "/auth/logout",
        );
        check(seen.status === 403 && seen.error === "csrf_rejected", `answered ${JSON.stringify(seen)}`);
        await page.reload();
        await page.locator("#user").waitFor({ state: "visible" });
        check(page.url() === GATE + "/ui/", `after reload: ${page.url()}`);
        return seen;
      },
    );

    await step("signing out ends the session: /ui/ asks to sign in again", async () => {
      // gatehouse answers the form with 303 to `after_logout`: its sign-in
      // page, or (the shipped config) /ui/, which sends the browser there.
      await Promise.all([
        page.waitForURL((url) => url.href.startsWith(GATE + "/auth/login")),
        page.click("#sign-out button"),
      ]);
      // (Asked with the context's cookies: gatehouse's sign-in page allows
      // no script to fetch anything.)
      const me = (await context.request.get(GATE + "/auth/me")).status();
      check(me === 401, `/auth/me after sign-out: ${me}`);
      await page.goto(GATE + "/ui/");
      check(page.url() === GATE + "/auth/login?rd=%2Fui%2F", `after sign-out: ${page.url()}`);
      const left = (await context.cookies(GATE)).filter((c) => c.name === "__Host-gatehouse");
      check(left.length === 0, `cookie left: ${JSON.stringify(left)}`);
    });

    // Gatehouse's sign-in page names no icon, so chromium asks for
    // /favicon.ico, which no route here serves; anything else the page
    // reported is its own fault (a CSP violation, a script error).
    const unexpected = problems.filter((p) => !p.endsWith("/favicon.ico)"));
    check(unexpected.length === 0, `the page reported:\n  ${unexpected.join("\n  ")}`);
    result.steps = steps;
    result.total_ms = Date.now() - started;
    console.log("RESULT " + JSON.stringify(result));
  } catch (err) {
    const shot = join(dirname(args.screenshot), "failure.png");
    await page.screenshot({ path: shot }).catch(() => {});
    console.error(`FAILED: ${err.stack || err}`);
    console.error(`at ${page.url()}; screenshot ${shot}`);
    console.error(`page text:\n${await page.locator("body").innerText().catch(() => "?")}`);
    if (problems.length) {
      console.error(`the page reported:\n  ${problems.join("\n  ")}`);
    }
    process.exitCode = 1;
  } finally {
    await browser.close();
    for (const server of servers) {
      server.close();
      server.closeAllConnections?.();
    }
  }
}

setTimeout(() => {
  console.error(`FAILED: no result within ${RUN_TIMEOUT_MS} ms`);
  process.exit(1);
}, RUN_TIMEOUT_MS).unref();
await main();
