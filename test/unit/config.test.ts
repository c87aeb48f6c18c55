import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "../../src/config.js";
import { checkSandboxChoice } from "../../src/deployment-mode.js";

const CLIENT_ID = "00001111-aaaa-2222-bbbb-3333cccc4444";

describe("loadConfig", () => {
  it("runs in sandbox mode with defaults when no Azure app is configured", () => {
    const config = loadConfig({});
    assert.equal(config.mode, "sandbox");
    assert.equal(config.port, 4000);
    assert.equal(config.credential, undefined);
    assert.equal(config.upstream.authorityHost, "https://login.microsoftonline.com");
    assert.equal(config.upstream.defenderApiBase, "https://api.security.microsoft.com");
    assert.equal(config.upstream.defaultBackend, "defender");
    assert.equal(config.sandbox.tenantCount, 13);
    assert.equal(config.sandbox.incidentsPerTenant, undefined);
  });

  it("switches to Azure mode with a client secret, trimming trailing slashes of hosts", () => {
    const config = loadConfig({
      AZURE_CLIENT_ID: CLIENT_ID,
      AZURE_CLIENT_SECRET: "s3cr3t~value",
      AZURE_AUTHORITY_HOST: "https://login.microsoftonline.us/",
      INCIDENTS_BACKEND: "graph",
      PORT: "8080",
    });
    assert.equal(config.mode, "azure");
    assert.deepEqual(config.credential, { kind: "secret", clientId: CLIENT_ID, clientSecret: "s3cr3t~value" });
    assert.equal(config.upstream.authorityHost, "https://login.microsoftonline.us");
    assert.equal(config.upstream.defaultBackend, "graph");
    assert.equal(config.port, 8080);
  });

  it("accepts a certificate path instead of a secret", () => {
    const config = loadConfig({ AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_CERTIFICATE_PATH: "/etc/crosswatch/app.pem" });
    assert.deepEqual(config.credential, {
      kind: "certificate",
      clientId: CLIENT_ID,
      certificatePath: "/etc/crosswatch/app.pem",
    });
  });

  it("reads at most 100 list pages per tenant refresh by default", () => {
    assert.equal(loadConfig({}).incidents.pagesPerRefresh, 100);
    assert.equal(loadConfig({ INCIDENT_PAGES_PER_REFRESH: "20" }).incidents.pagesPerRefresh, 20);
    assert.throws(() => loadConfig({ INCIDENT_PAGES_PER_REFRESH: "0" }), /INCIDENT_PAGES_PER_REFRESH/);
  });

  it("remembers lasting tenant failures for 60 s by default; 0 turns it off", () => {
    assert.equal(loadConfig({}).incidents.failureMemorySeconds, 60);
    assert.equal(loadConfig({ TENANT_FAILURE_MEMORY_SECONDS: "0" }).incidents.failureMemorySeconds, 0);
    assert.equal(loadConfig({ TENANT_FAILURE_MEMORY_SECONDS: "300" }).incidents.failureMemorySeconds, 300);
  });

  it("reads the hunting settings: Graph by default, enabled in the sandbox only, 100,000 rows, 45 Graph calls a minute", () => {
    const sandbox = loadConfig({});
    assert.deepEqual(sandbox.hunting, { enabled: true, defaultBackend: "graph", rowLimit: 100_000, graphCallsPerMinute: 45 });
    assert.equal(loadConfig({ AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x" }).hunting.enabled, false);
    const set = loadConfig({ HUNTING_ENABLED: "false", HUNTING_BACKEND: "defender", HUNTING_ROW_LIMIT: "500", HUNTING_GRAPH_CALLS_PER_MINUTE: "10" });
    assert.deepEqual(set.hunting, { enabled: false, defaultBackend: "defender", rowLimit: 500, graphCallsPerMinute: 10 });
    assert.throws(() => loadConfig({ HUNTING_BACKEND: "sentinel" }), /HUNTING_BACKEND/);
    assert.throws(() => loadConfig({ HUNTING_ROW_LIMIT: "100001" }), /HUNTING_ROW_LIMIT/);
  });

  it("treats empty variables as unset", () => {
    const config = loadConfig({ AZURE_CLIENT_ID: "", PORT: "", SANDBOX_INCIDENTS: "" });
    assert.equal(config.mode, "sandbox");
    assert.equal(config.port, 4000);
  });

  it("reads the consent redirect allow-list and the callback rate, refusing relative or fragment URLs", () => {
    const defaults = loadConfig({}).consent;
    assert.deepEqual(defaults.redirectUris, []);
    assert.equal(defaults.callbackRatePerMinute, 30);
    const config = loadConfig({
      CONSENT_REDIRECT_URIS: "https://portal.partner.example/consent/return, http://localhost:5173/cb",
      CONSENT_CALLBACK_RATE_PER_MINUTE: "5",
    }).consent;
    assert.deepEqual(config.redirectUris, ["https://portal.partner.example/consent/return", "http://localhost:5173/cb"]);
    assert.equal(config.callbackRatePerMinute, 5);
    for (const bad of ["/consent/callback", "javascript:alert(1)", "https://portal.partner.example/cb#x"]) {
      assert.throws(() => loadConfig({ CONSENT_REDIRECT_URIS: bad }), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /CONSENT_REDIRECT_URIS/);
        assert.ok(!error.message.includes(bad), "the value is not echoed");
        return true;
      });
    }
    assert.throws(() => loadConfig({ CONSENT_CALLBACK_RATE_PER_MINUTE: "0" }), /CONSENT_CALLBACK_RATE_PER_MINUTE/);
  });

  it("serves metrics on a loopback listener of their own: 9464 by default, a free port beside PORT=0, off, never PORT", () => {
    assert.deepEqual(loadConfig({}).metrics, { host: "127.0.0.1", port: 9464, token: undefined });
    assert.equal(loadConfig({ PORT: "0" }).metrics?.port, 0);
    assert.equal(loadConfig({ METRICS_PORT: "off" }).metrics, undefined);
    const token = "m".repeat(40);
    assert.deepEqual(loadConfig({ METRICS_PORT: "9100", METRICS_HOST: "0.0.0.0", METRICS_TOKEN: token }).metrics, { host: "0.0.0.0", port: 9100, token });
    assert.throws(() => loadConfig({ PORT: "8080", METRICS_PORT: "8080" }), /METRICS_PORT: must differ from PORT/);
    assert.throws(() => loadConfig({ METRICS_PORT: "api" }), /METRICS_PORT/);
    assert.throws(() => loadConfig({ METRICS_TOKEN: "short-token-value" }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /METRICS_TOKEN: must be at least 32 characters/);
      assert.ok(!error.message.includes("short-token-value"), "the value is not echoed");
      return true;
    });
  });

  it("reads the request timeout (headers within min(10 s, it)) and the admission limits", () => {
    assert.deepEqual(loadConfig({}).http, { requestTimeoutMs: 10_000, headersTimeoutMs: 10_000, maxConcurrentOperations: 32, maxQueuedOperations: 256 });
    const config = loadConfig({ REQUEST_TIMEOUT_MS: "2500", MAX_CONCURRENT_OPERATIONS: "4", MAX_QUEUED_OPERATIONS: "0" }).http;
    assert.deepEqual(config, { requestTimeoutMs: 2500, headersTimeoutMs: 2500, maxConcurrentOperations: 4, maxQueuedOperations: 0 });
    assert.equal(loadConfig({ REQUEST_TIMEOUT_MS: "60000" }).http.headersTimeoutMs, 10_000);
    assert.throws(() => loadConfig({ REQUEST_TIMEOUT_MS: "10" }), /REQUEST_TIMEOUT_MS/);
    assert.throws(() => loadConfig({ MAX_CONCURRENT_OPERATIONS: "0" }), /MAX_CONCURRENT_OPERATIONS/);
  });

  const invalid: [string, NodeJS.ProcessEnv, RegExp][] = [
    ["a client id that is no GUID", { AZURE_CLIENT_ID: "my-app", AZURE_CLIENT_SECRET: "x" }, /AZURE_CLIENT_ID: must be the app's client id/],
    ["a client id without credential", { AZURE_CLIENT_ID: CLIENT_ID }, /also set AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH/],
    ["both secret and certificate", { AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x", AZURE_CLIENT_CERTIFICATE_PATH: "/p" }, /not both/],
    ["a secret without client id", { AZURE_CLIENT_SECRET: "orphan-secret" }, /need AZURE_CLIENT_ID/],
    ["an http authority", { AZURE_AUTHORITY_HOST: "http://login.example" }, /AZURE_AUTHORITY_HOST: must be an https:\/\/ URL/],
    ["a port out of range", { PORT: "70000" }, /PORT/],
    ["an unknown backend", { INCIDENTS_BACKEND: "splunk" }, /INCIDENTS_BACKEND/],
    ["too many sandbox tenants", { SANDBOX_TENANTS: "5000" }, /SANDBOX_TENANTS/],
    ["a negative failure memory", { TENANT_FAILURE_MEMORY_SECONDS: "-1" }, /TENANT_FAILURE_MEMORY_SECONDS/],
  ];
  for (const [what, env, message] of invalid) {
    it(`refuses ${what} with a ConfigError naming the variable`, () => {
      assert.throws(() => loadConfig(env), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.code, "CONFIG_INVALID");
        assert.match(error.message, message);
        return true;
      });
    });
  }

  it("never echoes a secret value in its errors", () => {
    const secret = "Zq8Q~very-secret-value-123";
    for (const env of [{ AZURE_CLIENT_SECRET: secret }, { AZURE_CLIENT_ID: "bad", AZURE_CLIENT_SECRET: secret }]) {
      assert.throws(() => loadConfig(env), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.ok(!error.message.includes(secret), error.message);
        return true;
      });
    }
  });

  describe("SANDBOX: sandbox mode is chosen, never fallen into", () => {
    const PG = "postgres://crosswatch:db-password-123@db.internal:5432/crosswatch";
    const refuses = (env: NodeJS.ProcessEnv, pattern: RegExp) =>
      assert.throws(() => loadConfig(env), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, pattern);
        assert.ok(!error.message.includes("db-password-123"), "no connection string in the message");
        return true;
      });

    it("is unset by default: the sandbox runs on embedded storage, not chosen", () => {
      assert.equal(loadConfig({}).mode, "sandbox");
      assert.equal(loadConfig({}).sandbox.chosen, false);
      assert.equal(loadConfig({ AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x" }).sandbox.chosen, false);
    });

    it("reads whether the sandbox was chosen on DATABASE_URL (the start-up refuses it unchosen: deployment-mode)", () => {
      // Read, not refused here: `npm run keys` reads a production DATABASE_URL without the Azure app's settings.
      const unchosen = loadConfig({ DATABASE_URL: PG });
      assert.equal(unchosen.mode, "sandbox");
      assert.equal(unchosen.sandbox.chosen, false);
      assert.throws(() => checkSandboxChoice(unchosen), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /DATABASE_URL is set but AZURE_CLIENT_ID is not.*SANDBOX=true/);
        assert.ok(!error.message.includes("db-password-123"), "no connection string in the message");
        return true;
      });
      checkSandboxChoice(loadConfig({}));
      refuses({ DATABASE_URL: PG, SANDBOX: "false" }, /AZURE_CLIENT_ID is unset and SANDBOX=false/);
      const chosen = loadConfig({ DATABASE_URL: PG, SANDBOX: "true" });
      checkSandboxChoice(chosen);
      assert.equal(chosen.mode, "sandbox");
      assert.equal(chosen.sandbox.chosen, true);
      assert.equal(chosen.store.databaseUrl, PG);
      assert.equal(loadConfig({ DATABASE_URL: PG, AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x" }).mode, "azure");
    });

    it("SANDBOX=true with an Azure app, and SANDBOX=false without one, are configuration errors", () => {
      refuses({ SANDBOX: "true", AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x" }, /SANDBOX=true and AZURE_CLIENT_ID are both set/);
      refuses({ SANDBOX: "false" }, /AZURE_CLIENT_ID is unset/);
      refuses({ SANDBOX: "false", AZURE_CLIENT_ID: "" }, /AZURE_CLIENT_ID is unset/);
      refuses({ SANDBOX: "maybe" }, /SANDBOX: must be true or false/);
      assert.equal(loadConfig({ SANDBOX: "false", AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x" }).mode, "azure");
      assert.equal(loadConfig({ SANDBOX: "1" }).sandbox.chosen, true);
      assert.equal(loadConfig({ SANDBOX: "" }).sandbox.chosen, false);
    });
  });

  describe("caller authentication and limits", () => {
    const PARTNER = "11112222-3333-4444-5555-666677778888";

    it("runs the sandbox open and production closed by default; production may not be opened", () => {
      assert.equal(loadConfig({}).auth.anonymous, true);
      assert.equal(loadConfig({ AUTH_ANONYMOUS: "false" }).auth.anonymous, false);
      assert.equal(loadConfig({ AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x" }).auth.anonymous, false);
      assert.throws(
        () => loadConfig({ AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x", AUTH_ANONYMOUS: "true" }),
        (error: unknown) => error instanceof ConfigError && /AUTH_ANONYMOUS/.test(error.message),
      );
      assert.throws(() => loadConfig({ AUTH_ANONYMOUS: "maybe" }), ConfigError);
    });

    it("reads Entra caller settings with the default role map, and a custom one", () => {
      const config = loadConfig({ AUTH_ENTRA_AUDIENCE: "api://crosswatch, 0000aaaa-1111-bbbb-2222-cccc3333dddd", AUTH_ENTRA_TENANTS: PARTNER.toUpperCase() });
      assert.deepEqual(config.auth.entra?.audiences, ["api://crosswatch", "0000aaaa-1111-bbbb-2222-cccc3333dddd"]);
      assert.deepEqual(config.auth.entra?.tenants, [PARTNER]);
      assert.equal(config.auth.entra?.roleMap["Crosswatch.Admin"]?.role, "ADMIN");
      assert.equal(config.auth.entra?.clockToleranceSeconds, 30);
      const custom = loadConfig({
        AUTH_ENTRA_AUDIENCE: "api://crosswatch",
        AUTH_ENTRA_TENANTS: PARTNER,
        AUTH_ENTRA_ROLE_MAP: JSON.stringify({ "EU.Analysts": { role: "READER", tenantTags: ["eu"] } }),
      });
      assert.deepEqual(custom.auth.entra?.roleMap, {
        "EU.Analysts": { role: "READER", scope: { allTenants: false, tenantIds: [], tenantTags: ["eu"] } },
      });
    });

    it("refuses incomplete or unsafe Entra caller settings, naming the variable", () => {
      const refuses = (env: Record<string, string>, pattern: RegExp) =>
        assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && pattern.test(error.message));
      refuses({ AUTH_ENTRA_AUDIENCE: "api://crosswatch" }, /AUTH_ENTRA_TENANTS/);
      refuses({ AUTH_ENTRA_TENANTS: PARTNER }, /AUTH_ENTRA_AUDIENCE/);
      refuses({ AUTH_ENTRA_AUDIENCE: "api://x", AUTH_ENTRA_TENANTS: "contoso.com" }, /AUTH_ENTRA_TENANTS/);
      refuses({ AUTH_ENTRA_AUDIENCE: "api://x", AUTH_ENTRA_TENANTS: PARTNER, AUTH_ENTRA_CLOCK_TOLERANCE_SECONDS: "300" }, /AUTH_ENTRA_CLOCK_TOLERANCE_SECONDS/);
      refuses({ AUTH_ENTRA_AUDIENCE: "api://x", AUTH_ENTRA_TENANTS: PARTNER, AUTH_ENTRA_ROLE_MAP: "{not json" }, /AUTH_ENTRA_ROLE_MAP/);
      // A grant must say which tenants it covers: no silent "everything".
      refuses({ AUTH_ENTRA_AUDIENCE: "api://x", AUTH_ENTRA_TENANTS: PARTNER, AUTH_ENTRA_ROLE_MAP: '{"R": {"role": "ADMIN"}}' }, /AUTH_ENTRA_ROLE_MAP/);
      refuses({ AUTH_ENTRA_AUDIENCE: "api://x", AUTH_ENTRA_TENANTS: PARTNER, AUTH_ENTRA_ROLE_MAP: '{"R": {"role": "ROOT", "allTenants": true}}' }, /AUTH_ENTRA_ROLE_MAP/);
    });

    it("turns introspection off in production unless asked, and reads the query limits", () => {
      assert.equal(loadConfig({}).limits.introspection, true);
      assert.equal(loadConfig({ AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x" }).limits.introspection, false);
      assert.equal(loadConfig({ AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x", INTROSPECTION: "true" }).limits.introspection, true);
      assert.equal(loadConfig({}).limits.federationTracing, true);
      assert.equal(loadConfig({ AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x" }).limits.federationTracing, false);
      assert.equal(loadConfig({ AZURE_CLIENT_ID: CLIENT_ID, AZURE_CLIENT_SECRET: "x", FEDERATION_TRACING: "true" }).limits.federationTracing, true);
      const limits = loadConfig({ LIMIT_MAX_DEPTH: "9", LIMIT_MAX_COST: "1234" }).limits;
      assert.equal(limits.maxDepth, 9);
      assert.equal(limits.maxCost, 1234);
      assert.throws(() => loadConfig({ LIMIT_MAX_DEPTH: "0" }), ConfigError);
    });
  });
});
