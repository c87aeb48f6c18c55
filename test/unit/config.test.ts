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
});
