// The one-file Streamlit app (examples/streamlit/app.py) behind gatehouse, in
// a real browser: Debian's chromium driven by playwright-core (the package
// tests/browser installs). scripts/streamlit-check starts Streamlit and
// gatehouse (one route, `/**`, taking `auth: [session]`) and runs
//
//   node tests/browser/streamlit.mjs --gate https://127.0.0.1:<port> \
//     --user <name> --password <pw> --roles a,b --screenshots <dir>
//
// What it does:
//   1. opens / and is sent to gatehouse's sign-in page; signs in and lands
//      back on /, where Streamlit's page opens its WebSocket (/_stcore/stream)
//      through gatehouse and the script shows "Signed in as <user>", read from
//      st.context.headers (the WebSocket upgrade's headers), with the roles
//      and `method: session`;
//   2. clicks a button twice (each click a message up the WebSocket and a
//      rerun) and uploads a file (an HTTP PUT to /_stcore/upload_file, which
//      passes gatehouse's CSRF check as a same-origin request);
//   3. the app never receives gatehouse's cookie;
//   4. WebSocket upgrades to /_stcore/stream made by hand: without a session
//      401 missing_credentials (with a login_url); with the session cookie
//      but from another origin 403 csrf_rejected, as is an upload from there;
//      with the cookie from this origin 101;
//   5. signs out (a same-origin fetch to /auth/logout): gatehouse closes the
//      page's open WebSocket within seconds, and / asks to sign in again.
//
// Prints its steps and exits 0, or 1 with the reason, the page's text and a
// screenshot (failure.png in --screenshots).

import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { launch, newContext } from "./chromium.mjs";

const { values: args } = parseArgs({
  options: {
    gate: { type: "string" },
    user: { type: "string" },
    password: { type: "string" },
    roles: { type: "string", default: "" },
    screenshots: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
for (const name of ["gate", "user", "password", "screenshots"]) {
  if (!args[name]) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
}
const GATE = args.gate.replace(/\/$/, "");
/** How long one step may wait (Streamlit's first page load is the slowest). */
const STEP_TIMEOUT_MS = 30_000;
/** The whole run, as a last resort. */
const RUN_TIMEOUT_MS = 180_000;
/** SPEC §9: a session's tunnels close within 5 s of its logout. */
const LOGOUT_CLOSES_WITHIN_MS = 5_000;
const COOKIE = "__Host-gatehouse";

const started = Date.now();
function log(text) {
  console.log(`[${String(Date.now() - started).padStart(6)} ms] ${text}`);
}
async function step(name, fn) {
  const t0 = Date.now();
  const value = await fn();
  log(`ok   ${name} (${Date.now() - t0} ms)`);
  return value;
}
function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/** A WebSocket upgrade to `path` made by hand, with `headers` added: the
 * status, and the JSON error of a refusal. */
function upgrade(path, headers) {
  return raw("GET", path, {
    connection: "Upgrade",
    upgrade: "websocket",
    "sec-websocket-version": "13",
    "sec-websocket-key": randomBytes(16).toString("base64"),
    "sec-websocket-protocol": "streamlit",
    ...headers,
  });
}

/** One request to gatehouse outside the browser (TLS unchecked: the
 * certificate is self-signed): `{status, error, body, protocol}`. */
function raw(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(GATE + path, {
      method,
      headers,
      rejectUnauthorized: false,
      agent: false,
    });
    req.setTimeout(STEP_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, protocol: res.headers["sec-websocket-protocol"] ?? null });
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => {
        let parsed = {};
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, error: parsed.error ?? null, body: parsed });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function main() {
  mkdirSync(args.screenshots, { recursive: true });
  const browser = await launch(args.chromium);
  log(`chromium ${browser.version()} via playwright-core`);
  const context = await newContext(browser, { width: 900, height: 700 }, STEP_TIMEOUT_MS);
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const sockets = [];
  page.on("websocket", (ws) => {
    const seen = { url: ws.url(), opened: Date.now(), sent: 0, received: 0, closed: null };
    sockets.push(seen);
    ws.on("framesent", () => seen.sent++);
    ws.on("framereceived", () => seen.received++);
    ws.on("close", () => (seen.closed = Date.now()));
  });
  try {
    await step("GET / is sent to gatehouse's sign-in page", async () => {
      await page.goto(GATE + "/");
      check(page.url() === GATE + "/auth/login?rd=%2F", `expected the sign-in page, at ${page.url()}`);
      const h1 = await page.locator("h1").textContent();
      check(h1.startsWith("Sign in to "), `sign-in page heading: ${h1}`);
    });

    await step("signing in lands back on /", async () => {
      await page.fill("#username", args.user);
      await page.fill("#password", args.password);
      await Promise.all([page.waitForURL(GATE + "/"), page.click("button[type=submit]")]);
      const cookies = await context.cookies(GATE);
      check(cookies.some((c) => c.name === COOKIE), `no session cookie: ${JSON.stringify(cookies)}`);
    });

    await step(`the app shows "Signed in as ${args.user}" from st.context.headers`, async () => {
      await page.getByText(`Signed in as ${args.user}`, { exact: true }).waitFor();
      const caption = await page.getByText(/^roles: /).innerText();
      const roles = args.roles.split(",").filter(Boolean).join(", ");
      check(caption.includes(`roles: ${roles} · method: session`), `caption: ${caption}`);
      const stream = sockets.find((s) => s.url === GATE.replace(/^https/, "wss") + "/_stcore/stream");
      check(stream && stream.closed === null, `the page's WebSockets: ${JSON.stringify(sockets)}`);
      log(`     ${caption}`);
    });

    await step("a button click goes up the WebSocket and the rerun comes back", async () => {
      const stream = sockets.at(-1);
      const before = { ...stream };
      for (const n of [1, 2]) {
        await page.getByRole("button", { name: "Count" }).click();
        await page.getByText(`Clicks: ${n}`, { exact: true }).waitFor();
      }
      check(stream.sent > before.sent && stream.received > before.received, JSON.stringify(stream));
      check(sockets.length === 1, `the page reconnected: ${JSON.stringify(sockets)}`);
      log(`     frames on /_stcore/stream so far: ${stream.sent} sent, ${stream.received} received`);
    });

    await step("a file upload (PUT /_stcore/upload_file) passes gatehouse", async () => {
      const content = "hello from the browser\n";
      const put = page.waitForResponse(
        (r) => r.request().method() === "PUT" && r.url().includes("/_stcore/upload_file/"),
      );
      await page.locator("input[type=file]").setInputFiles({
        name: "hello.txt",
        mimeType: "text/plain",
        buffer: Buffer.from(content),
      });
      const answer = await put;
      check(answer.status() === 204 || answer.status() === 200, `upload answered ${answer.status()}`);
      await page.getByText(`Uploaded hello.txt: ${content.length} bytes`, { exact: true }).waitFor();
      log(`     PUT ${new URL(answer.url()).pathname.replace(/[^/]+\/[^/]+$/, "…")} answered ${answer.status()}`);
    });

    await step("the app never receives gatehouse's cookie", async () => {
      const caption = await page.getByText(/^cookies the app receives: /).innerText();
      check(!caption.includes(COOKIE), caption);
      log(`     ${caption}`);
      await page.screenshot({ path: join(args.screenshots, "streamlit.png"), fullPage: true });
    });

    const session = (await context.cookies(GATE)).find((c) => c.name === COOKIE);
    const cookie = `${COOKIE}=${session.value}`;

    await step("a WebSocket upgrade to /_stcore/stream without a session gets 401", async () => {
      const seen = await upgrade("/_stcore/stream", { origin: GATE });
      check(seen.status === 401 && seen.error === "missing_credentials", JSON.stringify(seen));
      check(
        seen.body.login_url === "/auth/login?rd=%2F_stcore%2Fstream",
        `login_url: ${JSON.stringify(seen.body)}`,
      );
      log(`     ${seen.status} ${JSON.stringify(seen.body)}`);
    });

    await step("with the session cookie but from another origin: 403 csrf_rejected", async () => {
      const ws = await upgrade("/_stcore/stream", { origin: "https://evil.example", cookie });
      check(ws.status === 403 && ws.error === "csrf_rejected", `upgrade: ${JSON.stringify(ws)}`);
      const put = await raw(
        "PUT",
        "/_stcore/upload_file/forged/forged",
        { origin: "https://evil.example", cookie, "content-type": "text/plain" },
        "forged",
      );
      check(put.status === 403 && put.error === "csrf_rejected", `upload: ${JSON.stringify(put)}`);
      log(`     upgrade ${ws.status} ${ws.error}; upload ${put.status} ${put.error}`);
    });

    await step("with the session cookie from this origin: 101", async () => {
      const seen = await upgrade("/_stcore/stream", { origin: GATE, cookie });
      check(seen.status === 101 && seen.protocol === "streamlit", JSON.stringify(seen));
    });

    await step("signing out closes the page's WebSocket; / asks to sign in again", async () => {
      const stream = sockets.at(-1);
      check(stream.closed === null, `closed before sign-out: ${JSON.stringify(stream)}`);
      const t0 = Date.now();
      const status = await page.evaluate(async () => (await fetch("/auth/logout", { method: "POST" })).status);
      check(status === 204, `POST /auth/logout from the page: ${status}`);
      while (stream.closed === null && Date.now() - t0 < LOGOUT_CLOSES_WITHIN_MS + 2_000) {
        await new Promise((r) => setTimeout(r, 50));
      }
      check(stream.closed !== null, `the WebSocket was still open ${Date.now() - t0} ms after sign-out`);
      const after = stream.closed - t0;
      check(after <= LOGOUT_CLOSES_WITHIN_MS + 500, `the WebSocket closed ${after} ms after sign-out`);
      log(`     the WebSocket closed ${after} ms after the sign-out`);
      await page.goto(GATE + "/");
      check(page.url() === GATE + "/auth/login?rd=%2F", `after sign-out: ${page.url()}`);
    });

    check(problems.length === 0, `the page reported:\n  ${problems.join("\n  ")}`);
    log(`done in ${Date.now() - started} ms`);
  } catch (err) {
    const shot = join(args.screenshots, "failure.png");
    await page.screenshot({ path: shot }).catch(() => {});
    console.error(`FAILED: ${err.stack || err}`);
    console.error(`at ${page.url()}; screenshot ${shot}`);
    console.error(`page text:\n${await page.locator("body").innerText().catch(() => "?")}`);
    console.error(`WebSockets: ${JSON.stringify(sockets)}`);
    if (problems.length) {
      console.error(`the page reported:\n  ${problems.join("\n  ")}`);
    }
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

setTimeout(() => {
  console.error(`FAILED: no result within ${RUN_TIMEOUT_MS} ms`);
  process.exit(1);
}, RUN_TIMEOUT_MS).unref();
await main();
