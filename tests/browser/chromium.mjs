// What the browser scripts share: Debian's chromium, launched through
// playwright-core as a closed network needs it (no background fetches of
// Google's hosts, as in the CORS test), and a context for a self-signed
// test certificate.
import { chromium } from "playwright-core";

/** Launches `executablePath` headless. */
export function launch(executablePath) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * A light-scheme context of `viewport` size. The certificate is
 * self-signed: it is ignored, as a user clicking through the warning
 * would. Everything else about TLS and cookies is real.
 */
export async function newContext(browser, viewport, timeoutMs) {
  const ctx = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport,
    colorScheme: "light",
  });
  ctx.setDefaultTimeout(timeoutMs);
  return ctx;
}
