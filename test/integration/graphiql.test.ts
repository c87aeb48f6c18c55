import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { chromium, type Browser } from "playwright-core";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { GRAPHIQL_CSP } from "../../src/http/graphiql.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";

const CHROMIUM = "/usr/bin/chromium";
const BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

describe("offline GraphiQL", () => {
  let runtime: Runtime;

  before(async () => {
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://" }));
  });
  after(async () => {
    await runtime.close();
  });

  it("serves the page at /graphql to browsers and at /graphiql, with a self-only CSP and nothing off-host", async () => {
    for (const path of ["/graphql", "/graphiql"]) {
      const response = await request(`${runtime.url}${path}`, { headers: { accept: BROWSER_ACCEPT } });
      const html = await response.body.text();
      assert.equal(response.statusCode, 200, path);
      assert.match(String(response.headers["content-type"]), /^text\/html/);
      assert.equal(response.headers["content-security-policy"], GRAPHIQL_CSP);
      assert.match(GRAPHIQL_CSP, /script-src 'self';/);
      assert.doesNotMatch(GRAPHIQL_CSP, /https?:|\*/);
      // Every URL in the page is on this origin.
      for (const [, url] of html.matchAll(/(?:src|href)="([^"]+)"/g)) assert.match(url!, /^(\/graphiql\/assets\/|data:)/);
      assert.doesNotMatch(html, /https?:\/\//);
      assert.doesNotMatch(html, /<script>(?!\s*$)/, "no inline script");
      assert.match(html, /IncidentQueue/);
    }
  });

  it("leaves GraphQL over GET and POST to Apollo", async () => {
    const get = await request(`${runtime.url}/graphql?query=${encodeURIComponent("{ serverInfo { mode } }")}`, {
      headers: { accept: "application/json", "apollo-require-preflight": "true" },
    });
    assert.deepEqual(await get.body.json(), { data: { serverInfo: { mode: "SANDBOX" } } });
    const post = await request(`${runtime.url}/graphql`, {
      method: "POST",
      headers: { accept: "text/html, application/json", "content-type": "application/json" },
      body: JSON.stringify({ query: "{ serverInfo { mode } }" }),
    });
    assert.deepEqual(await post.body.json(), { data: { serverInfo: { mode: "SANDBOX" } } });
  });

  it("serves its files from the installed bundle with their content types, gzipped when asked", async () => {
    const expected: Record<string, RegExp> = {
      "yoga-graphiql.umd.js": /^text\/javascript/,
      "graphiql.css": /^text\/css/,
      "editor.worker.js": /^text\/javascript/,
      "json.worker.js": /^text\/javascript/,
      "graphql.worker.js": /^text\/javascript/,
      "crosswatch-graphiql.js": /^text\/javascript/,
    };
    for (const [name, type] of Object.entries(expected)) {
      const response = await request(`${runtime.url}/graphiql/assets/${name}`, { headers: { "accept-encoding": "gzip" } });
      const body = Buffer.from(await response.body.arrayBuffer());
      assert.equal(response.statusCode, 200, name);
      assert.match(String(response.headers["content-type"]), type, name);
      assert.equal(response.headers["content-encoding"], "gzip", name);
      assert.equal(response.headers["x-content-type-options"], "nosniff");
      assert.ok(body.length > 100, name);
    }
    const missing = await request(`${runtime.url}/graphiql/assets/..%2F..%2Fpackage.json`);
    assert.equal(missing.statusCode, 404);
    await missing.body.dump();
  });

  describe("in Chromium", { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: .ci/run installs Debian's chromium` }, () => {
    let browser: Browser;

    before(async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--no-first-run",
          "--disable-sync",
          "--disable-quic",
        ],
      });
    });
    after(async () => {
      await browser?.close();
    });

    it("opens /graphql, runs the incident queue tab, shows the result, and asks nothing of any other host", async () => {
      const context = await browser.newContext();
      const requested: string[] = [];
      const problems: string[] = [];
      // Context-wide: also sees the requests of Monaco's workers.
      context.on("request", (r) => requested.push(r.url()));
      const page = await context.newPage();
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
      page.on("console", (message) => {
        if (message.type() === "error" || /Content Security Policy|Refused to/.test(message.text())) {
          problems.push(`console ${message.type()}: ${message.text()}`);
        }
      });
      try {
        const response = await page.goto(`${runtime.url}/graphql`, { waitUntil: "load" });
        assert.equal(response?.status(), 200);
        assert.match(String(response?.headers()["content-type"]), /^text\/html/);

        // The example operations are there as tabs, the first one (the incident queue) active.
        await page.locator(".graphiql-tab").first().waitFor({ timeout: 60_000 });
        assert.equal(await page.locator(".graphiql-tab").count(), 9);
        assert.match(String(await page.locator(".graphiql-tab-active").textContent()), /^IncidentQueue/);
        await page.locator(".graphiql-query-editor").getByText("query IncidentQueue").waitFor({ timeout: 60_000 });
        // The header editor is open and ready for credentials.
        await page.locator(".graphiql-editor-tool").getByText('"Authorization": "Bearer <access token>"').waitFor({ timeout: 60_000 });

        const answer = page.waitForResponse((r) => r.url().endsWith("/graphql") && r.request().method() === "POST" && /IncidentQueue/.test(r.request().postData() ?? ""));
        await page.locator(".graphiql-execute-button").click();
        const body = (await (await answer).json()) as { data?: { incidents: { totalCount: number; edges: unknown[] } }; errors?: unknown };
        assert.equal(body.errors, undefined);
        assert.ok(body.data!.incidents.totalCount > 0);
        assert.equal(body.data!.incidents.edges.length, 20);
        // And a person sees it in the result pane.
        const pane = page.locator(".graphiql-response");
        for (const deadline = Date.now() + 60_000; ; ) {
          const text = (await pane.textContent())?.replace(/\u00a0/g, " ") ?? "";
          if (text.includes('"incidents"') && text.includes('"totalCount"')) break;
          assert.ok(Date.now() < deadline, `the result pane shows no incidents: ${text.slice(0, 200)}`);
          await page.waitForTimeout(100);
        }
        if (process.env.GRAPHIQL_SCREENSHOT) await page.screenshot({ path: process.env.GRAPHIQL_SCREENSHOT });

        const offHost = requested.filter((url) => {
          const { protocol, hostname } = new URL(url);
          if (protocol === "data:" || protocol === "blob:") return false;
          return hostname !== "127.0.0.1" && hostname !== "localhost";
        });
        assert.deepEqual(offHost, [], "requests off localhost");
        assert.ok(requested.some((url) => url.endsWith("/graphiql/assets/graphql.worker.js")), "Monaco's GraphQL worker came from this server");
        assert.deepEqual(problems, []);
      } finally {
        await context.close();
      }
    });
  });
});
