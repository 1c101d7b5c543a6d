/** Headless Debian Chromium, driven by playwright-core, for the tests that load pages from the proxy. */

import { type Browser, chromium, type Page } from "playwright-core";

/** Debian's chromium package. */
export const CHROMIUM = "/usr/bin/chromium";

/** Whether Chromium is installed (the browser tests are skipped, with a printed reason, where it is not). */
export const chromiumAvailable: boolean = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

/**
 * Starts headless Chromium with no network of its own (no updates, sync or background requests); `extraArgs`
 * adds switches (e.g. `--ignore-certificate-errors` for the test CA).
 */
export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs,
    ],
  });
}

/**
 * Runs `body`; if it throws, saves a screenshot of `page` to a new temporary folder, prints its path, and throws
 * the error again.
 */
export async function screenshotOnFailure<T>(
  page: Page,
  name: string,
  body: () => Promise<T>,
): Promise<T> {
  try {
    return await body();
  } catch (error) {
    try {
      const dir = await Deno.makeTempDir({ prefix: `websockify-${name}-` });
      const path = `${dir}/${name}.png`;
      await page.screenshot({ path, timeout: 5000 });
      console.error(`${name} failed: screenshot saved to ${path}`);
    } catch (screenshotError) {
      console.error(`${name} failed; no screenshot: ${screenshotError}`);
    }
    throw error;
  }
}
