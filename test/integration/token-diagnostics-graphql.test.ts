import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createApp, type App } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { openStore, type Store } from "../../src/store/store.js";
import { createClientCertificate } from "../../src/sandbox/certs.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

const DIAGNOSTICS = `query($ids: [ID!]!) {
  tokenDiagnostics(tenantIds: $ids) {
    tenantId backend ok tid audience issuer appId version roles missingRoles missingRolesForUpdate canRead canUpdate
    issuedAt expiresAt fromCache requiredRoles { role enables }
    error { code message hint retryAfterSeconds consentLink { url tenantId } }
  }
}`;

/**
 * Token diagnostics over GraphQL, with the app configured as in production (an Azure app: client id,
 * secret or certificate, authority host) but pointed at a sandbox: the real MSAL path end to end.
 */
for (const credentialKind of ["secret", "certificate"] as const) {
  describe(`token diagnostics over GraphQL with a ${credentialKind}`, () => {
    let t: TestSandbox;
    let app: App;
    let url: string;
    let dir: string;
    let tenants: SandboxTenant[];
    let store: Store;
    let adminKey: string;
    const logs = captureLogger("debug");
    const gql = (query: string, variables?: Record<string, unknown>) =>
      postGraphQL(url, query, variables, { authorization: `Bearer ${adminKey}` });
    const named = (name: string) => tenants.find((x) => x.displayName === name)!;

    before(async () => {
      const cert = await createClientCertificate();
      t = await startTestSandbox({ tenantCount: 40, app: { certificates: [cert.credential] } });
      tenants = t.sandbox.tenants;
      dir = await mkdtemp(join(tmpdir(), "crosswatch-cred-"));
      const env: Record<string, string> = {
        PORT: "0",
        LOG_LEVEL: "debug",
        DATA_DIR: "memory://",
        AZURE_CLIENT_ID: t.sandbox.clientId,
        AZURE_AUTHORITY_HOST: t.sandbox.url,
        DEFENDER_API_BASE: t.sandbox.url,
        GRAPH_API_BASE: `${t.sandbox.url}/v1.0`,
      };
      if (credentialKind === "secret") {
        env.AZURE_CLIENT_SECRET = t.sandbox.clientSecret;
      } else {
        const path = join(dir, "app.pem");
        await writeFile(path, `${cert.privateKeyPem}\n${cert.certPem}`, { mode: 0o600 });
        env.AZURE_CLIENT_CERTIFICATE_PATH = path;
      }
      const config = loadConfig(env);
      config.upstream.trustedCaPem = [t.sandbox.caCertPem];
      // Production mode refuses to start without caller authentication: give it an admin key.
      store = await openStore({});
      adminKey = (
        await store.apiKeys.create({ name: "admin", role: "ADMIN", scope: { allTenants: true, tenantIds: [], tenantTags: [] }, createdBy: "test" })
      ).key;
      app = await createApp(config, { logger: logs.logger, store });
      url = await app.listen();
    });
    after(async () => {
      await app.close();
      await store.close();
      await t.close();
      await rm(dir, { recursive: true, force: true });
    });

    it("explains a healthy tenant's token: tid, roles, audience, expiry", async () => {
      const contoso = named("Contoso Ltd");
      const result = await gql(DIAGNOSTICS, { ids: [contoso.id] });
      assert.equal(result.body.errors, undefined);
      const [d] = result.body.data.tokenDiagnostics;
      assert.equal(d.tenantId, contoso.id);
      assert.equal(d.ok, true);
      assert.equal(d.tid, contoso.id);
      assert.equal(d.backend, "DEFENDER");
      assert.equal(d.audience, "https://api.security.microsoft.com");
      assert.equal(d.issuer, `https://sts.windows.net/${contoso.id}/`);
      assert.equal(d.appId, t.sandbox.clientId);
      assert.equal(d.version, "1.0");
      assert.deepEqual(d.roles, ["Incident.ReadWrite.All"]);
      assert.deepEqual(d.missingRoles, []);
      assert.equal(d.canUpdate, true);
      assert.ok(Date.parse(d.expiresAt) > Date.now() + 50 * 60_000);
      assert.deepEqual(d.requiredRoles, [
        { role: "Incident.Read.All", enables: ["READ"] },
        { role: "Incident.ReadWrite.All", enables: ["READ", "UPDATE"] },
      ]);
      assert.equal(d.error, null);
    });

    it("says CONSENT_REQUIRED with a working consent link for the unconsented tenant", async () => {
      const alpine = named("Alpine Ski House");
      const [d] = (await gql(DIAGNOSTICS, { ids: [alpine.id] })).body.data.tokenDiagnostics;
      assert.equal(d.ok, false);
      assert.equal(d.error.code, "CONSENT_REQUIRED");
      assert.match(d.error.hint, /consent/i);
      assert.equal(d.error.consentLink.tenantId, alpine.id);
      const page = await t.call("GET", new URL(d.error.consentLink.url).pathname + new URL(d.error.consentLink.url).search);
      assert.equal(page.status, 200);
      assert.match(page.text, /Permissions requested/);
      assert.match(page.text, /Alpine Ski House/);
    });

    it("shows missingRoles for the tenant consented without the incident role", async () => {
      const coho = named("Coho Winery");
      const [d] = (await gql(DIAGNOSTICS, { ids: [coho.id] })).body.data.tokenDiagnostics;
      assert.equal(d.ok, false);
      assert.equal(d.tid, coho.id);
      assert.deepEqual(d.roles, ["AdvancedHunting.Read.All"]);
      assert.deepEqual(d.missingRoles, ["Incident.Read.All", "Incident.ReadWrite.All"]);
      assert.equal(d.error.code, "MISSING_ROLE");
      assert.ok(d.error.consentLink);
    });

    it("uses the Graph backend for the Graph-only tenant, and names the missing Defender principal otherwise", async () => {
      const proseware = named("Proseware, Inc.");
      const viaDefender = await gql(
        `query($ids: [ID!]!) { tokenDiagnostics(tenantIds: $ids, backend: DEFENDER) { ok error { code } } }`,
        { ids: [proseware.id] },
      );
      assert.equal(viaDefender.body.errors, undefined, JSON.stringify(viaDefender.body.errors));
      assert.equal(viaDefender.body.data.tokenDiagnostics[0].error.code, "RESOURCE_NOT_PROVISIONED");
      const viaGraph = await gql(
        `query($ids: [ID!]!) { tokenDiagnostics(tenantIds: $ids, backend: GRAPH) { ok audience roles } }`,
        { ids: [proseware.id] },
      );
      assert.deepEqual(viaGraph.body.data.tokenDiagnostics[0], {
        ok: true,
        audience: "https://graph.microsoft.com",
        roles: ["SecurityIncident.ReadWrite.All"],
      });
    });

    it("gives an unknown tenant TENANT_NOT_FOUND and a malformed id BAD_USER_INPUT", async () => {
      const unknown = await gql(DIAGNOSTICS, { ids: ["0a0a0a0a-0000-4000-8000-000000000000"] });
      assert.equal(unknown.body.data.tokenDiagnostics[0].error.code, "TENANT_NOT_FOUND");
      const malformed = await gql(DIAGNOSTICS, { ids: ["contoso.onmicrosoft.com"] });
      assert.equal(malformed.body.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
    });

    it("makes exactly one token call per tenant for 50 concurrent queries over 20 tenants, and none when repeated", async () => {
      // Generated customers: no earlier test has asked for their tokens.
      const twenty = tenants.filter((x) => x.displayName.startsWith("Customer ")).slice(0, 20);
      assert.equal(twenty.length, 20);
      t.sandbox.context.resetCounters();
      const ids = twenty.map((x) => x.id);
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => gql(DIAGNOSTICS, { ids: [...ids.slice(i % 20), ...ids.slice(0, i % 20)] })),
      );
      for (const r of results) {
        assert.equal(r.body.errors, undefined);
        assert.equal(r.body.data.tokenDiagnostics.length, 20);
      }
      const counters = t.sandbox.context.counterSnapshot();
      assert.equal(counters.byEndpoint.token, 20);
      for (const id of ids) assert.equal(counters.byTenant[id]?.token, 1, id);

      const again = await gql(DIAGNOSTICS, { ids });
      assert.ok(again.body.data.tokenDiagnostics.every((d: { fromCache: boolean }) => d.fromCache));
      assert.equal(t.sandbox.context.counterSnapshot().byEndpoint.token, 20);
    });

    it("answers Tenant.token for registered tenants", async () => {
      const contoso = named("Contoso Ltd");
      const registered = await gql(`mutation { registerTenant(input: { id: "${contoso.id}", displayName: "Contoso" }) { token { ok tid roles } } }`);
      assert.deepEqual(registered.body.data.registerTenant.token, { ok: true, tid: contoso.id, roles: ["Incident.ReadWrite.All"] });
    });

    it("runs closed and terse as in production: credentials required, no introspection, no field suggestions", async () => {
      const open = await postGraphQL(url, "{ tenants { totalCount } }");
      assert.equal(open.status, 401);
      assert.equal(open.body.errors?.[0]?.extensions?.code, "UNAUTHENTICATED");
      const introspection = await gql("{ __schema { types { name } } }");
      assert.equal(introspection.body.errors?.[0]?.extensions?.code, "GRAPHQL_VALIDATION_FAILED");
      const typo = await gql("{ tenantz { totalCount } }");
      assert.equal(typo.body.errors?.[0]?.extensions?.code, "GRAPHQL_VALIDATION_FAILED");
      assert.doesNotMatch(typo.text, /Did you mean/);
    });

    it("never puts a token or the app's secret in a response or a log line", async () => {
      const everything = await gql(DIAGNOSTICS, { ids: tenants.map((x) => x.id) });
      const issued = await t.sandbox.mintAccessToken({ tenantId: named("Contoso Ltd").id, resource: "defender" });
      // Any RS256 JWT (an access token); consent links legitimately carry an HS256 state.
      const tokenShape = /eyJhbGciOiJSUzI1NiIs[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\./;
      assert.match(issued, tokenShape, "the pattern recognises the sandbox's access tokens");
      assert.doesNotMatch(everything.text, tokenShape);
      assert.ok(!everything.text.includes(t.sandbox.clientSecret));
      assert.ok(logs.lines.length > 0);
      for (const line of logs.lines) {
        assert.doesNotMatch(line, tokenShape, line);
        assert.ok(!line.includes(adminKey.slice(17)), line);
        assert.ok(!line.includes(t.sandbox.clientSecret), line);
        assert.ok(!line.includes(issued.slice(-40)), line);
        assert.ok(!line.includes("PRIVATE KEY"), line);
      }
    });
  });
}
