import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import type { CallerRole, TenantScope } from "../../src/auth/caller.js";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";

const ALL: TenantScope = { allTenants: true, tenantIds: [], tenantTags: [] };
/** A marker only the saved query holds: it must never reach a log line or the audit log. */
const MARKER = "zq-marker-7731-never-logged";
const QUERY = `AlertInfo | where Title != "${MARKER}" | take 3`;

const SAVE = `mutation($name: String!, $query: String!, $tags: [String!]) {
  saveHunt(name: $name, query: $query, tenantTags: $tags) { id name query tenantTags createdBy { kind id name } createdAt updatedAt }
}`;
const LIST = `query($first: Int, $after: String) {
  savedHunts(first: $first, after: $after) { totalCount edges { cursor node { id name query tenantTags } } pageInfo { hasNextPage endCursor } }
}`;
const RUN = `query($id: ID!) {
  runSavedHunt(id: $id, first: 50) { totalCount columns { name } tenantOutcomes { tenantId ok error { code } } }
}`;
const DELETE = `mutation($id: ID!) { deleteSavedHunt(id: $id) }`;

/**
 * Saved hunts end to end (closed sandbox, API keys): who may save, list, run and delete; runs narrowed to
 * the caller's scope with the sandbox's counters as proof; every action audited without the query text,
 * and the query text in no log line.
 */
describe("saved hunts", () => {
  let runtime: Runtime;
  let tenants: SandboxTenant[];
  const logs = captureLogger("debug");
  const keys: Record<string, string> = {};
  let contoso: SandboxTenant;

  const named = (name: string) => tenants.find((t) => t.displayName === name)!;
  const gql = (key: string, query: string, variables?: Record<string, unknown>) =>
    postGraphQL(runtime.url, query, variables, { authorization: `Bearer ${key}` });
  const errorCode = (result: GraphQLResponse) => result.body.errors?.[0]?.extensions?.code;
  const createKey = async (name: string, role: CallerRole, scope: TenantScope) =>
    (await runtime.app.store.apiKeys.create({ name, role, scope, createdBy: "test" })).key;
  const storedHunts = async () => (await runtime.app.store.db.query<{ n: number }>("SELECT count(*)::int AS n FROM saved_hunts"))[0]!.n;
  const auditRows = async (action: string) =>
    runtime.app.store.db.query<{ outcome: string; target: string | null; detail: unknown; actor_name: string }>(
      "SELECT outcome, target, detail, actor_name FROM audit_events WHERE action = $1 ORDER BY id",
      [action],
    );
  /** Hunting calls the sandbox received, per tenant. */
  const huntCalls = () => {
    const byTenant = runtime.sandbox!.context.counterSnapshot().byTenant;
    const out: Record<string, number> = {};
    for (const [tenantId, counts] of Object.entries(byTenant)) {
      const n = (counts["graph.hunt"] ?? 0) + (counts["defender.hunt"] ?? 0);
      if (n > 0) out[tenantId] = n;
    }
    return out;
  };

  before(async () => {
    runtime = await startRuntime(
      loadConfig({ PORT: "0", LOG_LEVEL: "debug", DATA_DIR: "memory://", AUTH_ANONYMOUS: "false" }),
      { logger: logs.logger },
    );
    tenants = runtime.sandbox!.tenants;
    contoso = named("Contoso Ltd");
    // Explicit roles, whatever the sandbox seeds: the Graph hunting role in every consented tenant but Litware
    // (the sandbox's tenant without it) and Coho Winery (no incident roles either).
    for (const tenant of tenants) {
      if (!tenant.consent.granted || ["Litware, Inc.", "Coho Winery"].includes(tenant.displayName)) continue;
      const response = await request(`${runtime.sandbox!.url}/_sandbox/tenants/${tenant.id}/grant-consent`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ defender: ["Incident.ReadWrite.All"], graph: ["SecurityIncident.ReadWrite.All", "ThreatHunting.Read.All"] }),
        dispatcher: runtime.app.dispatcher,
      });
      assert.equal(response.statusCode, 200);
      await response.body.dump();
    }
    keys.admin = await createKey("hunt admin", "ADMIN", ALL);
    keys.reader = await createKey("reader all", "READER", ALL);
    keys.readerContoso = await createKey("reader contoso", "READER", { allTenants: false, tenantIds: [contoso.id], tenantTags: [] });
    keys.adminEu = await createKey("admin eu", "ADMIN", { allTenants: false, tenantIds: [], tenantTags: ["eu"] });
  });
  after(async () => {
    await runtime?.close();
  });

  let huntId: string;
  let untaggedId: string;

  it("saves a hunt as an admin over all tenants, audited without the query text", async () => {
    const result = await gql(keys.admin!, SAVE, { name: "High alerts, NA", query: QUERY, tags: ["na"] });
    assert.equal(result.body.errors, undefined, result.text);
    const hunt = result.body.data.saveHunt;
    assert.equal(hunt.name, "High alerts, NA");
    assert.equal(hunt.query, QUERY);
    assert.deepEqual(hunt.tenantTags, ["na"]);
    assert.equal(hunt.createdBy.kind, "API_KEY");
    assert.equal(hunt.createdBy.name, "hunt admin");
    huntId = hunt.id;
    const untagged = await gql(keys.admin!, SAVE, { name: "Everything", query: QUERY });
    assert.equal(untagged.body.errors, undefined, untagged.text);
    untaggedId = untagged.body.data.saveHunt.id;

    const rows = await auditRows("hunt.save");
    assert.equal(rows.length, 2);
    assert.equal(rows[0]!.outcome, "SUCCESS");
    assert.equal(rows[0]!.target, huntId);
    assert.deepEqual(rows[0]!.detail, { name: "High alerts, NA", tenantTags: ["na"], queryLength: QUERY.length, replaced: false });
    assert.ok(!JSON.stringify(rows).includes(MARKER), "the audit log never holds the query text");
  });

  it("refuses a reader, and an admin over some tenants only, with FORBIDDEN and no store write", async () => {
    const before = await storedHunts();
    for (const key of [keys.reader!, keys.adminEu!]) {
      const result = await gql(key, SAVE, { name: "Sneaky", query: QUERY, tags: ["eu"] });
      assert.equal(errorCode(result), "FORBIDDEN", result.text);
      assert.equal(result.body.data, null);
      // Replacing an existing hunt by its name is refused just the same.
      assert.equal(errorCode(await gql(key, SAVE, { name: "high alerts, na", query: "DeviceInfo | take 1" })), "FORBIDDEN");
    }
    assert.equal(await storedHunts(), before);
    assert.equal((await runtime.app.store.savedHunts.get(huntId))?.query, QUERY);
    const refused = (await auditRows("hunt.save")).filter((r) => r.outcome === "FORBIDDEN");
    assert.equal(refused.length, 4, "refusals are audited");
    assert.ok(!JSON.stringify(refused).includes(MARKER));
  });

  it("refuses oversized or malformed input with BAD_USER_INPUT before any write or audit", async () => {
    const before = await storedHunts();
    const audited = (await auditRows("hunt.save")).length;
    for (const [variables, field] of [
      [{ name: "n".repeat(129), query: QUERY }, "name"],
      [{ name: "ok", query: "q".repeat(10_001) }, "query"],
      [{ name: "ok", query: "   " }, "query"],
      [{ name: "ok", query: QUERY, tags: ["bad tag"] }, "tenantTags"],
      [{ name: "ok", query: QUERY, tags: ["t".repeat(65)] }, "tenantTags"],
      [{ name: "ok", query: QUERY, tags: Array.from({ length: 101 }, (_, i) => `t${i}`) }, "tenantTags"],
    ] as const) {
      const result = await gql(keys.admin!, SAVE, variables);
      assert.equal(errorCode(result), "BAD_USER_INPUT", result.text);
      assert.equal(result.body.errors?.[0]?.extensions?.field, field);
    }
    assert.equal(await storedHunts(), before);
    assert.equal((await auditRows("hunt.save")).length, audited);
  });

  it("lists saved hunts by name for any caller with a role, in pages", async () => {
    const first = await gql(keys.readerContoso!, LIST, { first: 1 });
    assert.equal(first.body.errors, undefined, first.text);
    const page = first.body.data.savedHunts;
    assert.equal(page.totalCount, 2);
    assert.deepEqual(page.edges.map((e: { node: { name: string } }) => e.node.name), ["Everything"]);
    assert.equal(page.pageInfo.hasNextPage, true);
    const second = await gql(keys.readerContoso!, LIST, { first: 1, after: page.pageInfo.endCursor });
    assert.deepEqual(second.body.data.savedHunts.edges.map((e: { node: { name: string; query: string } }) => [e.node.name, e.node.query]), [
      ["High alerts, NA", QUERY],
    ]);
    assert.equal(errorCode(await gql(keys.reader!, LIST, { after: "bm9wZQ" })), "BAD_USER_INPUT");
  });

  it("runs a saved hunt through huntingQuery, in the hunt's tenants within the caller's scope only", async () => {
    runtime.sandbox!.context.resetCounters(true);
    // Tags ["na"], run by an admin over everything: every NA tenant, and only those.
    const na = tenants.filter((t) => t.tags.includes("na")).map((t) => t.id).sort();
    const admin = await gql(keys.admin!, RUN, { id: huntId });
    assert.equal(admin.body.errors, undefined, admin.text);
    const outcomes = admin.body.data.runSavedHunt.tenantOutcomes as { tenantId: string; ok: boolean }[];
    assert.deepEqual(outcomes.map((o) => o.tenantId).sort(), na);
    assert.ok(outcomes.filter((o) => o.ok).length >= 4, admin.text);
    assert.equal(admin.body.data.runSavedHunt.columns[0].name, "tenantId");
    assert.ok(admin.body.data.runSavedHunt.totalCount > 0, admin.text);
    // Upstream calls went to NA tenants only (a tenant refused before any call, e.g. without consent, makes none).
    assert.ok(Object.keys(huntCalls()).length > 0);
    assert.ok(Object.keys(huntCalls()).every((id) => na.includes(id)), JSON.stringify(huntCalls()));

    // The same hunt for a reader of Contoso (an EU tenant): nothing in scope carries "na", so no tenant and no call.
    runtime.sandbox!.context.resetCounters(true);
    const narrowed = await gql(keys.readerContoso!, RUN, { id: huntId });
    assert.equal(narrowed.body.errors, undefined, narrowed.text);
    assert.deepEqual(narrowed.body.data.runSavedHunt.tenantOutcomes, []);
    assert.deepEqual(huntCalls(), {});

    // A hunt without tags: every tenant the caller may read, here Contoso alone.
    const untagged = await gql(keys.readerContoso!, RUN, { id: untaggedId });
    assert.equal(untagged.body.errors, undefined, untagged.text);
    assert.deepEqual(untagged.body.data.runSavedHunt.tenantOutcomes.map((o: { tenantId: string }) => o.tenantId), [contoso.id]);
    assert.deepEqual(Object.keys(huntCalls()), [contoso.id]);

    const runs = await auditRows("hunt.run");
    assert.equal(runs.length, 3);
    assert.ok(runs.every((r) => r.outcome === "SUCCESS"));
    assert.deepEqual(runs[1]!.detail, { name: "High alerts, NA", tenantTags: ["na"], tenants: 0, failedTenants: 0 });
    assert.equal(runs[2]!.actor_name, "reader contoso");
    assert.ok(!JSON.stringify(runs).includes(MARKER));

    const unknown = await gql(keys.reader!, RUN, { id: "00000000-0000-4000-8000-000000000000" });
    assert.equal(errorCode(unknown), "NOT_FOUND");
    assert.equal((await auditRows("hunt.run")).at(-1)!.outcome, "NOT_FOUND");
  });

  it("deletes a saved hunt as an admin over all tenants only; NOT_FOUND the second time; audited", async () => {
    assert.equal(errorCode(await gql(keys.reader!, DELETE, { id: huntId })), "FORBIDDEN");
    assert.ok(await runtime.app.store.savedHunts.get(huntId), "a refused delete deletes nothing");
    const deleted = await gql(keys.admin!, DELETE, { id: huntId });
    assert.equal(deleted.body.errors, undefined, deleted.text);
    assert.equal(deleted.body.data.deleteSavedHunt, true);
    assert.equal(errorCode(await gql(keys.admin!, DELETE, { id: huntId })), "NOT_FOUND");
    const rows = await auditRows("hunt.delete");
    assert.deepEqual(
      rows.map((r) => [r.outcome, r.target]),
      [
        ["FORBIDDEN", huntId],
        ["SUCCESS", huntId],
        ["NOT_FOUND", huntId],
      ],
    );
    assert.deepEqual(rows[1]!.detail, { name: "High alerts, NA" });
  });

  it("never writes the query text to a log line", async () => {
    assert.ok(logs.lines.length > 0);
    assert.ok(logs.lines.some((line) => line.includes('"graphql operation"')), "operations were logged");
    const leaking = logs.lines.filter((line) => line.includes(MARKER));
    assert.deepEqual(leaking, []);
  });
});
