import assert from "node:assert/strict";
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { decodeJwt, decodeProtectedHeader, SignJWT, UnsecuredJWT } from "jose";
import { request } from "undici";
import type { CallerRole, TenantScope } from "../../src/auth/caller.js";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";

const ALL: TenantScope = { allTenants: true, tenantIds: [], tenantTags: [] };
const UNKNOWN_TENANT = "0b7e4c1d-2f3a-4b5c-8d6e-7f8091a2b3c4";

const INCIDENTS = `query($ids: [ID!]) {
  incidents(tenantIds: $ids, first: 20) {
    edges { node { tenantId incidentId } }
    tenantOutcomes { tenantId ok error { code message } }
  }
}`;

/**
 * Callers end to end, closed sandbox (AUTH_ANONYMOUS=false): API keys and sandbox-minted Entra tokens over
 * real HTTP, every way of reaching a tenant outside the caller's scope, and the sandbox's counters proving
 * that refused requests cost no token request and no upstream call.
 */
describe("callers: authentication, tenant isolation, audit", () => {
  let runtime: Runtime;
  let tenants: SandboxTenant[];
  const logs = captureLogger("debug");
  const keys: Record<string, string> = {};
  let contoso: SandboxTenant; // in readerA's scope
  let fabrikam: SandboxTenant; // outside it

  const named = (name: string) => tenants.find((t) => t.displayName === name)!;
  const gql = (key: string | undefined, query: string, variables?: Record<string, unknown>) =>
    postGraphQL(runtime.url, query, variables, key ? { authorization: `Bearer ${key}` } : {});
  /** Token and incident calls the sandbox received for one tenant. */
  const upstreamCalls = (tenantId: string) => {
    const counts = runtime.sandbox!.context.counterSnapshot().byTenant[tenantId] ?? {};
    return Object.entries(counts)
      .filter(([endpoint]) => endpoint !== "throttled")
      .reduce((sum, [, n]) => sum + (n ?? 0), 0);
  };
  const totalCalls = () => runtime.sandbox!.context.counterSnapshot().total;
  const createKey = async (name: string, role: CallerRole, scope: TenantScope) =>
    (await runtime.app.store.apiKeys.create({ name, role, scope, createdBy: "test" })).key;
  /** A user token signed by the sandbox's Entra, with overrides. */
  const mintToken = async (body: Record<string, unknown> = {}) => {
    const response = await request(`${runtime.sandbox!.url}/_sandbox/caller-tokens`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      dispatcher: runtime.app.dispatcher,
    });
    assert.equal(response.statusCode, 200);
    return ((await response.body.json()) as { accessToken: string }).accessToken;
  };
  const errorCode = (result: GraphQLResponse) => result.body.errors?.[0]?.extensions?.code;

  before(async () => {
    runtime = await startRuntime(
      loadConfig({ PORT: "0", LOG_LEVEL: "debug", DATA_DIR: "memory://", AUTH_ANONYMOUS: "false" }),
      { logger: logs.logger },
    );
    tenants = runtime.sandbox!.tenants;
    contoso = named("Contoso Ltd");
    fabrikam = named("Fabrikam, Inc.");
    keys.admin = await createKey("admin", "ADMIN", ALL);
    keys.readerA = await createKey("reader contoso", "READER", { allTenants: false, tenantIds: [contoso.id], tenantTags: [] });
    keys.responderA = await createKey("responder contoso", "RESPONDER", { allTenants: false, tenantIds: [contoso.id], tenantTags: [] });
    keys.readerNa = await createKey("reader na", "READER", { allTenants: false, tenantIds: [], tenantTags: ["na"] });
    keys.adminEu = await createKey("admin eu", "ADMIN", { allTenants: false, tenantIds: [], tenantTags: ["eu"] });
    keys.revoked = await createKey("revoked", "ADMIN", ALL);
    const revokedId = (await runtime.app.store.apiKeys.verify(keys.revoked)) as { ok: true; record: { id: string } };
    await runtime.app.store.apiKeys.revoke(revokedId.record.id, "test");
    keys.expired = await createKey("expired", "ADMIN", ALL);
    await runtime.app.store.db.query("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE name = 'expired'");
  });
  after(async () => {
    await runtime.close();
  });

  describe("authentication", () => {
    it("refuses a request without credentials with 401, a challenge, and no upstream call", async () => {
      const before = totalCalls();
      const result = await gql(undefined, "{ tenants { totalCount } }");
      assert.equal(result.status, 401);
      assert.equal(errorCode(result), "UNAUTHENTICATED");
      assert.match(String(result.headers["www-authenticate"]), /^Bearer /);
      assert.equal(totalCalls(), before);
    });

    for (const [label, key, reason] of [
      ["an unknown key", `cwk_${"a".repeat(12)}_${"B".repeat(43)}`, /not valid/],
      ["a malformed key", "cwk_nope", /malformed/],
      ["a revoked key", () => keys.revoked!, /revoked/],
      ["an expired key", () => keys.expired!, /expired/],
    ] as const) {
      it(`refuses ${label} with UNAUTHENTICATED`, async () => {
        const value = typeof key === "function" ? key() : key;
        const result = await gql(value, "{ viewer { id } }");
        assert.equal(result.status, 401);
        assert.equal(errorCode(result), "UNAUTHENTICATED");
        assert.match(result.body.errors![0]!.message, reason);
        assert.ok(!result.text.includes(value), "the key is not echoed");
      });
    }

    it("accepts a key in X-API-Key and says who the caller is", async () => {
      const result = await postGraphQL(runtime.url, "{ viewer { kind name role grants { role scope { allTenants tenantIds tenantTags } } } }", undefined, {
        "x-api-key": keys.readerA!,
      });
      assert.deepEqual(result.body.data?.viewer, {
        kind: "API_KEY",
        name: "reader contoso",
        role: "READER",
        grants: [{ role: "READER", scope: { allTenants: false, tenantIds: [contoso.id], tenantTags: [] } }],
      });
    });

    it("accepts a sandbox-minted Entra token and maps its app roles", async () => {
      const token = await mintToken({ roles: ["Crosswatch.Responder"], name: "Ana Analyst" });
      const result = await gql(token, "{ viewer { kind name role } }");
      assert.deepEqual(result.body.data?.viewer, { kind: "ENTRA", name: "Ana Analyst", role: "RESPONDER" });
    });

    it("refuses hostile and invalid bearer tokens, each with UNAUTHENTICATED and no upstream incident call", async () => {
      const valid = await mintToken({ roles: ["Crosswatch.Admin"] });
      const claims = decodeJwt(valid);
      const header = decodeProtectedHeader(valid);
      const jwks = (await (
        await request(`${runtime.sandbox!.url}/common/discovery/v2.0/keys`, { dispatcher: runtime.app.dispatcher })
      ).body.json()) as { keys: import("node:crypto").JsonWebKey[] };
      const publicPem = createPublicKey({ key: jwks.keys[0]!, format: "jwk" }).export({ type: "spki", format: "pem" });
      const foreign = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
      const now = Math.floor(Date.now() / 1000);
      const hostile: [string, string][] = [
        ["alg none", new UnsecuredJWT(claims).encode()],
        ["HS256 keyed with the public key", await new SignJWT(claims).setProtectedHeader({ alg: "HS256", kid: header.kid! }).sign(new TextEncoder().encode(String(publicPem)))],
        ["signed by a foreign key", await new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: header.kid! }).sign(foreign)],
        ["expired", await mintToken({ expiresInSeconds: -3600 })],
        ["not yet valid", await mintToken({ notBeforeInSeconds: 3600 })],
        ["wrong audience", await mintToken({ audience: "api://someone-else" })],
        ["wrong issuer", await mintToken({ issuer: "https://evil.example/issuer/v2.0" })],
        ["wrong tenant", await mintToken({ tenantId: contoso.id })],
        ["tampered payload", `${valid.split(".")[0]}.${Buffer.from(JSON.stringify({ ...claims, roles: ["Crosswatch.Admin"], exp: now + 99_999 })).toString("base64url")}.${valid.split(".")[2]}`],
        ["garbage", "not-a-jwt"],
      ];
      const incidentCalls = () => {
        const c = runtime.sandbox!.context.counterSnapshot().byEndpoint;
        return (c["defender.list"] ?? 0) + (c["graph.list"] ?? 0) + (c.token ?? 0);
      };
      const before = incidentCalls();
      for (const [label, token] of hostile) {
        const result = await gql(token, "{ incidents(first: 1) { totalCount } }");
        assert.equal(result.status, 401, label);
        assert.equal(errorCode(result), "UNAUTHENTICATED", label);
        assert.ok(!result.text.includes(token), `${label}: token not echoed`);
      }
      assert.equal(incidentCalls(), before, "no token or incident call for a refused caller");
    });

    it("refuses a valid token that carries no Crosswatch role with 403 FORBIDDEN", async () => {
      const result = await gql(await mintToken({ roles: ["Some.Other.Role"] }), "{ viewer { id } }");
      assert.equal(result.status, 403);
      assert.equal(errorCode(result), "FORBIDDEN");
    });
  });

  describe("tenant isolation", () => {
    it("lists only the tenants in scope, by id and by tag", async () => {
      const a = await gql(keys.readerA, "{ tenants { totalCount edges { node { id } } } }");
      assert.deepEqual(a.body.data.tenants.edges.map((e: any) => e.node.id), [contoso.id]);
      const na = await gql(keys.readerNa, "{ tenants(first: 100) { totalCount edges { node { id tags } } } }");
      const expected = tenants.filter((t) => t.tags.includes("na")).map((t) => t.id).sort();
      assert.deepEqual(na.body.data.tenants.edges.map((e: any) => e.node.id).sort(), expected);
      assert.equal(na.body.data.tenants.totalCount, expected.length);
    });

    it("answers a tenant outside the scope exactly as an unknown one: TENANT_FORBIDDEN, and no upstream call", async () => {
      const before = upstreamCalls(fabrikam.id);
      const outside = await gql(keys.readerA, INCIDENTS, { ids: [contoso.id, fabrikam.id, UNKNOWN_TENANT] });
      assert.equal(outside.body.errors, undefined);
      const nodes = outside.body.data.incidents.edges.map((e: any) => e.node.tenantId);
      assert.ok(nodes.length > 0 && nodes.every((t: string) => t === contoso.id), "only Contoso's incidents");
      const outcomes = Object.fromEntries(outside.body.data.incidents.tenantOutcomes.map((o: any) => [o.tenantId, o]));
      assert.equal(outcomes[contoso.id].ok, true);
      for (const id of [fabrikam.id, UNKNOWN_TENANT]) {
        assert.equal(outcomes[id].error.code, "TENANT_FORBIDDEN");
        assert.equal(outcomes[id].error.message.replace(id, "X"), outcomes[UNKNOWN_TENANT].error.message.replace(UNKNOWN_TENANT, "X"));
      }
      assert.equal(upstreamCalls(fabrikam.id), before);
    });

    it("refuses every other path to an out-of-scope tenant: fields, aliases, variables, nesting, _entities, tokens", async () => {
      // Warm Fabrikam's cache and token as an admin first: nothing cached for one caller may serve another.
      const warm = await gql(keys.admin, INCIDENTS, { ids: [fabrikam.id] });
      assert.equal(warm.body.data.incidents.tenantOutcomes[0].ok, true);
      const before = upstreamCalls(fabrikam.id);
      const incidentId = warm.body.data.incidents.edges[0].node.incidentId;

      const single = await gql(keys.readerA, `{ tenant(id: "${fabrikam.id}") { id displayName } }`);
      assert.equal(errorCode(single), "TENANT_FORBIDDEN");
      assert.equal(single.body.data.tenant, null);
      const unknown = await gql(keys.readerA, `{ tenant(id: "${UNKNOWN_TENANT}") { id } }`);
      assert.equal(errorCode(unknown), "TENANT_FORBIDDEN");

      const aliased = await gql(keys.readerA, `{ mine: tenant(id: "${contoso.id}") { id } theirs: tenant(id: "${fabrikam.id}") { id incidents { totalCount } } }`);
      assert.equal(aliased.body.data.mine.id, contoso.id);
      assert.equal(aliased.body.data.theirs, null);
      assert.deepEqual(aliased.body.errors!.map((e: any) => [e.path, e.extensions.code]), [[["theirs"], "TENANT_FORBIDDEN"]]);

      const viaVariables = await gql(keys.readerA, "query($id: ID!, $incident: ID!) { incident(tenantId: $id, incidentId: $incident) { incidentName } }", {
        id: fabrikam.id,
        incident: incidentId,
      });
      assert.equal(errorCode(viaVariables), "TENANT_FORBIDDEN");

      const nested = await gql(keys.readerA, "{ tenants { edges { node { id incidents(first: 1) { tenantOutcomes { tenantId } } token { tenantId } } } } }");
      assert.deepEqual(nested.body.data.tenants.edges.map((e: any) => e.node.id), [contoso.id]);

      const diagnostics = await gql(keys.readerA, `{ tokenDiagnostics(tenantIds: ["${fabrikam.id}", "${UNKNOWN_TENANT}"]) { tenantId ok roles error { code } } }`);
      assert.deepEqual(
        diagnostics.body.data.tokenDiagnostics.map((d: any) => [d.tenantId, d.ok, d.roles, d.error.code]),
        [
          [fabrikam.id, false, [], "TENANT_FORBIDDEN"],
          [UNKNOWN_TENANT, false, [], "TENANT_FORBIDDEN"],
        ],
      );

      const entities = await gql(
        keys.readerA,
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { id displayName } ... on Incident { incidentName } } }",
        {
          r: [
            { __typename: "Tenant", id: contoso.id },
            { __typename: "Tenant", id: fabrikam.id },
            { __typename: "Incident", tenantId: fabrikam.id, incidentId },
          ],
        },
      );
      assert.equal(entities.body.data._entities[0].id, contoso.id);
      assert.equal(entities.body.data._entities[1], null);
      assert.equal(entities.body.data._entities[2], null);
      assert.deepEqual(entities.body.errors!.map((e: any) => e.extensions.code), ["TENANT_FORBIDDEN", "TENANT_FORBIDDEN"]);

      const tagged = await gql(keys.readerA, `{ incidents(tenantTags: ["na"]) { tenantOutcomes { tenantId } } }`);
      assert.deepEqual(tagged.body.data.incidents.tenantOutcomes, [], "tags select only within the scope");

      const update = await gql(keys.responderA, `mutation { updateIncident(tenantId: "${fabrikam.id}", incidentId: "${incidentId}", input: { status: IN_PROGRESS }) { status } }`);
      assert.equal(errorCode(update), "TENANT_FORBIDDEN");

      assert.equal(upstreamCalls(fabrikam.id), before, "no token or incident call for Fabrikam through any refused path");
    });

    it("lets roles do only what they may: READER reads, RESPONDER updates, ADMIN manages", async () => {
      const listed = await gql(keys.readerA, INCIDENTS, { ids: [contoso.id] });
      const incidentId = listed.body.data.incidents.edges[0].node.incidentId;
      const byReader = await gql(keys.readerA, `mutation { updateIncident(tenantId: "${contoso.id}", incidentId: "${incidentId}", input: { assignedTo: "ana@partner.example" }) { assignedTo } }`);
      assert.equal(errorCode(byReader), "FORBIDDEN");
      const byResponder = await gql(keys.responderA, `mutation { updateIncident(tenantId: "${contoso.id}", incidentId: "${incidentId}", input: { assignedTo: "ana@partner.example" }) { assignedTo } }`);
      assert.equal(byResponder.body.errors, undefined, JSON.stringify(byResponder.body.errors));
      assert.equal(byResponder.body.data.updateIncident.assignedTo, "ana@partner.example");

      const rename = await gql(keys.responderA, `mutation { updateTenant(id: "${contoso.id}", input: { displayName: "Contoso" }) { id } }`);
      assert.equal(errorCode(rename), "FORBIDDEN");
      // An admin over tag eu manages Contoso (eu) but cannot see, let alone remove, Fabrikam (na).
      const renameEu = await gql(keys.adminEu, `mutation { updateTenant(id: "${contoso.id}", input: { displayName: "Contoso Ltd" }) { displayName } }`);
      assert.equal(renameEu.body.data.updateTenant.displayName, "Contoso Ltd");
      const removeNa = await gql(keys.adminEu, `mutation { removeTenant(id: "${fabrikam.id}") }`);
      assert.equal(errorCode(removeNa), "TENANT_FORBIDDEN");
      assert.ok(await runtime.app.store.tenants.get(fabrikam.id), "Fabrikam is still registered");
      const registerOutside = await gql(keys.adminEu, `mutation { registerTenant(input: { id: "${UNKNOWN_TENANT}", displayName: "Elsewhere", tags: ["na"] }) { id } }`);
      assert.equal(errorCode(registerOutside), "TENANT_FORBIDDEN");
      const revealExisting = await gql(keys.adminEu, `mutation { registerTenant(input: { id: "${fabrikam.id}", displayName: "Mine now", tags: ["eu"] }) { id } }`);
      assert.equal(errorCode(revealExisting), "TENANT_FORBIDDEN", "an existing tenant outside the scope is not revealed by ALREADY_EXISTS");

      for (const query of [
        "{ apiKeys { edges { node { id } } } }",
        "{ auditEvents { edges { node { id } } } }",
        'mutation { createApiKey(input: { name: "x", role: ADMIN, allTenants: true }) { key } }',
      ]) {
        assert.equal(errorCode(await gql(keys.adminEu, query)), "FORBIDDEN", query);
      }
    });
  });

  describe("API keys and the audit log through GraphQL", () => {
    it("creates a key shown once, lists it without its secret, revokes it at once", async () => {
      const created = await gql(
        keys.admin,
        'mutation { createApiKey(input: { name: "integration", role: READER, tenantTags: ["eu"], expiresInDays: 30 }) { key apiKey { id prefix active scope { tenantTags } } } }',
      );
      const { key, apiKey } = created.body.data.createApiKey;
      assert.match(key, /^cwk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
      assert.ok(key.startsWith(`cwk_${apiKey.prefix}_`));
      assert.deepEqual(apiKey.scope.tenantTags, ["eu"]);
      const euView = await gql(key, "{ tenants(first: 100) { edges { node { tags } } } }");
      assert.ok(euView.body.data.tenants.edges.every((e: any) => e.node.tags.includes("eu")));

      const listed = await gql(keys.admin, "{ apiKeys(first: 100) { edges { node { id prefix name active } } } }");
      assert.ok(!listed.text.includes(key.slice(17)), "no secret in the listing");
      assert.ok(listed.body.data.apiKeys.edges.some((e: any) => e.node.id === apiKey.id && e.node.active));

      const revoked = await gql(keys.admin, `mutation { revokeApiKey(id: "${apiKey.id}") { active revokedAt } }`);
      assert.equal(revoked.body.data.revokeApiKey.active, false);
      const after = await gql(key, "{ viewer { id } }");
      assert.equal(after.status, 401);
    });

    it("records mutations, refusals and key events with who, when, tenant and outcome", async () => {
      const result = await gql(keys.admin, "{ auditEvents(first: 200) { edges { node { at actorKind actorName action tenantId target outcome detail requestId } } } }");
      const events = result.body.data.auditEvents.edges.map((e: any) => e.node);
      const find = (predicate: (e: any) => boolean) => events.find(predicate);
      assert.ok(find((e) => e.action === "incident.update" && e.actorName === "responder contoso" && e.outcome === "SUCCESS" && e.tenantId === contoso.id));
      assert.ok(find((e) => e.action === "incident.update" && e.actorName === "reader contoso" && e.outcome === "FORBIDDEN"));
      assert.ok(find((e) => e.action === "incident.update" && e.outcome === "TENANT_FORBIDDEN" && e.tenantId === fabrikam.id));
      assert.ok(find((e) => e.action === "tenant.remove" && e.actorName === "admin eu" && e.outcome === "TENANT_FORBIDDEN"));
      assert.ok(find((e) => e.action === "key.create" && e.outcome === "SUCCESS" && e.actorKind === "API_KEY"));
      assert.ok(find((e) => e.action === "key.revoke" && e.outcome === "SUCCESS"));
      assert.ok(events.every((e: any) => typeof e.requestId === "string" && e.requestId.length > 0));
      assert.ok(!result.text.includes("cwk_"), "no key in the audit log");
      const filtered = await gql(keys.admin, `{ auditEvents(filter: { tenantId: "${fabrikam.id}" }) { edges { node { tenantId } } } }`);
      assert.ok(filtered.body.data.auditEvents.edges.length > 0);
      assert.ok(filtered.body.data.auditEvents.edges.every((e: any) => e.node.tenantId === fabrikam.id));
    });
  });

  it("never writes a key or a bearer token to the log", () => {
    const text = logs.lines.join("\n");
    for (const key of Object.values(keys)) {
      const line = logs.lines.find((l) => l.includes(key.slice(17)));
      assert.equal(line, undefined, "no key secret in the log");
    }
    assert.doesNotMatch(text, /eyJ[\w-]{10,}\.eyJ[\w-]{10,}\./, "no JWT in the log");
  });
});
