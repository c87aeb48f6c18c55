import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "../../src/config.js";

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

  it("treats empty variables as unset", () => {
    const config = loadConfig({ AZURE_CLIENT_ID: "", PORT: "", SANDBOX_INCIDENTS: "" });
    assert.equal(config.mode, "sandbox");
    assert.equal(config.port, 4000);
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
      const limits = loadConfig({ LIMIT_MAX_DEPTH: "9", LIMIT_MAX_COST: "1234" }).limits;
      assert.equal(limits.maxDepth, 9);
      assert.equal(limits.maxCost, 1234);
      assert.throws(() => loadConfig({ LIMIT_MAX_DEPTH: "0" }), ConfigError);
    });
  });
});
