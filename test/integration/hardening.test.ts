import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import { postGraphQL } from "../helpers/graphql.js";

/**
 * Hostile requests over real HTTP against a sandbox runtime with small limits: each is refused with its
 * code, and the sandbox's counters show that a refused operation made no token or incident call.
 */
describe("hardening against hostile queries and requests", () => {
  let runtime: Runtime;
  const upstreamCalls = () => runtime.sandbox!.context.counterSnapshot().total;

  before(async () => {
    runtime = await startRuntime(
      loadConfig({
        PORT: "0",
        LOG_LEVEL: "silent",
        DATA_DIR: "memory://",
        // The request path only: no background sync engine, so the sandbox counts only what a request caused.
        INCIDENT_SYNC: "false",
        LIMIT_MAX_DEPTH: "8",
        LIMIT_MAX_ALIASES: "5",
        LIMIT_MAX_DIRECTIVES: "5",
        LIMIT_MAX_TOKENS: "800",
        LIMIT_MAX_COST: "200",
        BODY_LIMIT_BYTES: "16384",
      }),
    );
  });
  after(async () => {
    await runtime.close();
  });

  const refuse = async (label: string, query: string, code: string, variables?: Record<string, unknown>) => {
    const before = upstreamCalls();
    const result = await postGraphQL(runtime.url, query, variables);
    assert.equal(result.status, 400, `${label}: ${result.text.slice(0, 300)}`);
    assert.equal(result.body.errors?.[0]?.extensions?.code, code, `${label}: ${result.text.slice(0, 300)}`);
    assert.equal(result.body.data, undefined, label);
    assert.equal(upstreamCalls(), before, `${label}: no upstream call`);
    return result;
  };

  it("refuses a query deeper than the limit", async () => {
    const result = await refuse(
      "deep",
      "{ tenants { edges { node { incidents { edges { node { alerts { entities { properties { name } } } } } } } } } }",
      "GRAPHQL_VALIDATION_FAILED",
    );
    assert.match(result.body.errors![0]!.message, /depth/i);
  });

  it("refuses too many aliases", async () => {
    const aliases = Array.from({ length: 8 }, (_, i) => `a${i}: serverInfo { mode }`).join(" ");
    assert.match((await refuse("aliases", `{ ${aliases} }`, "GRAPHQL_VALIDATION_FAILED")).body.errors![0]!.message, /alias/i);
  });

  it("refuses too many directives", async () => {
    const directives = Array.from({ length: 8 }, () => "@include(if: true)").join(" ");
    assert.match((await refuse("directives", `{ serverInfo ${directives} { mode } }`, "GRAPHQL_VALIDATION_FAILED")).body.errors![0]!.message, /directive/i);
  });

  it("refuses a document with too many tokens", async () => {
    const fields = Array.from({ length: 900 }, () => "mode").join(" ");
    await refuse("tokens", `{ serverInfo { ${fields} } }`, "GRAPHQL_PARSE_FAILED");
  });

  it("refuses circular fragments cleanly", async () => {
    await refuse(
      "circular",
      "query { tenants { ...A } } fragment A on TenantConnection { edges { node { id } } ...B } fragment B on TenantConnection { ...A }",
      "GRAPHQL_VALIDATION_FAILED",
    );
  });

  it("counts tenant fan-out in the cost: one tenant passes, all of them over the limit do not", async () => {
    const tenants = runtime.sandbox!.tenants;
    // The same operation: only the number of tenants it spans differs.
    const query = "query($ids: [ID!]) { incidents(tenantIds: $ids, first: 1) { edges { node { incidentId } } } }";
    const one = await postGraphQL(runtime.url, query, { ids: [tenants[0]!.id] });
    assert.equal(one.body.errors, undefined, JSON.stringify(one.body.errors));
    // The tenant's first sync may go on after that answer (it waits for the first page only so long): let it
    // end, so the count below holds only what the refused operation could have caused.
    while (runtime.app.incidents.syncing > 0) await sleep(10);
    const result = await refuse("costly", query, "COST_LIMIT_EXCEEDED", { ids: tenants.map((t) => t.id) });
    assert.ok(Number(result.body.errors![0]!.extensions!.cost) > 200);
    assert.equal(result.body.errors![0]!.extensions!.maxCost, 200);
  });

  it("refuses CSRF-style requests: a GET without a preflight header and a form post", async () => {
    const before = upstreamCalls();
    const get = await request(`${runtime.url}/graphql?query=${encodeURIComponent("{ incidents { totalCount } }")}`, {
      headers: { accept: "application/json" },
    });
    assert.equal(get.statusCode, 400);
    assert.match(await get.body.text(), /CSRF|preflight/i);
    const form = await request(`${runtime.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `query=${encodeURIComponent("mutation { removeTenant(id: \"x\") }")}`,
    });
    assert.ok(form.statusCode === 415 || form.statusCode === 400, `form post answered ${form.statusCode}`);
    await form.body.dump();
    const textPlain = await request(`${runtime.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify({ query: "{ incidents { totalCount } }" }),
    });
    assert.ok(textPlain.statusCode === 415 || textPlain.statusCode === 400, `text/plain post answered ${textPlain.statusCode}`);
    await textPlain.body.dump();
    assert.equal(upstreamCalls(), before);
  });

  it("refuses batched requests and oversized bodies", async () => {
    const batch = await request(`${runtime.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([{ query: "{ serverInfo { mode } }" }, { query: "{ serverInfo { mode } }" }]),
    });
    assert.equal(batch.statusCode, 400);
    await batch.body.dump();
    const huge = await request(`${runtime.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ serverInfo { mode } }", variables: { pad: "x".repeat(20_000) } }),
    });
    assert.equal(huge.statusCode, 413);
    await huge.body.dump();
  });
});
