import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL } from "../helpers/graphql.js";

const UPDATE = `mutation($t: ID!, $i: ID!, $input: UpdateIncidentInput!) {
  updateIncident(tenantId: $t, incidentId: $i, input: $input) { backend classification determination }
}`;

/**
 * updateIncident writes only what the tenant's backend accepts (issue 13, items 1 and 6): on a Defender
 * tenant a determination goes only with classification TRUE_POSITIVE and one of its determinations, and
 * UNKNOWN is never a classification to write; on a Graph tenant each public value goes out as the member of
 * Graph's published type (`compromisedAccount`, `notMalicious`, `confirmedActivity`), which the sandbox,
 * like Graph, is the judge of: it answers 400 for anything else. A refusal costs no token and no call.
 */
describe("updateIncident: what each backend can write", () => {
  let runtime: Runtime;
  const gql = (variables: Record<string, unknown>) => postGraphQL(runtime.url, UPDATE, variables);
  const total = () => runtime.sandbox!.context.counterSnapshot().total;
  const endpoint = (name: string) => (runtime.sandbox!.context.counterSnapshot().byEndpoint as Record<string, number | undefined>)[name] ?? 0;
  let defenderTenant: SandboxTenant;
  let graphTenant: SandboxTenant;
  const activeIncident = (tenant: SandboxTenant) =>
    runtime.sandbox!.incidents.forTenant(tenant.id).find((r) => r.status === "Active" && r.redirectIncidentId === null)!;

  before(async () => {
    // The request path only (INCIDENT_SYNC off): the sandbox counts just what each mutation caused.
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://", SANDBOX_INCIDENTS: "20", INCIDENT_SYNC: "false" }));
    const consented = runtime.sandbox!.tenants.filter((t) => t.resources.defender && t.resources.graph && t.consent.granted);
    defenderTenant = consented[0]!;
    graphTenant = consented[1]!;
    await runtime.app.store.tenants.update(graphTenant.id, { backend: "graph" });
  });
  after(async () => {
    await runtime.close();
  });

  it("Defender tenant: refuses other combinations with BAD_USER_INPUT and a hint, before any token or upstream call", async () => {
    const id = String(activeIncident(defenderTenant).incidentId);
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ determination: "MALWARE" }, "determination", /classification: TRUE_POSITIVE/],
      [{ classification: "FALSE_POSITIVE", determination: "NOT_MALICIOUS" }, "determination", /classification: TRUE_POSITIVE/],
      [{ classification: "INFORMATIONAL_EXPECTED_ACTIVITY", determination: "CONFIRMED_USER_ACTIVITY" }, "determination", /classification: TRUE_POSITIVE/],
      [{ classification: "TRUE_POSITIVE", determination: "SECURITY_TESTING" }, "determination", /MULTI_STAGED_ATTACK/],
      [{ classification: "UNKNOWN", status: "RESOLVED" }, "classification", /INFORMATIONAL_EXPECTED_ACTIVITY/],
      [{ classification: "TRUE_POSITIVE", determination: "UNKNOWN" }, "determination", /NOT_AVAILABLE/],
    ];
    const before = total();
    for (const [input, field, hint] of cases) {
      const result = await gql({ t: defenderTenant.id, i: id, input });
      const error = result.body.errors?.[0];
      assert.equal(error?.extensions?.code, "BAD_USER_INPUT", `${JSON.stringify(input)}: ${result.text.slice(0, 300)}`);
      assert.equal(error?.extensions?.field, field, JSON.stringify(input));
      assert.match(String(error?.extensions?.hint), hint, JSON.stringify(input));
    }
    assert.equal(total(), before, "no token request and no upstream call");
  });

  it("Defender tenant: TRUE_POSITIVE with one of its determinations goes through", async () => {
    const record = activeIncident(defenderTenant);
    const patches = endpoint("defender.patch");
    const result = await gql({ t: defenderTenant.id, i: String(record.incidentId), input: { classification: "TRUE_POSITIVE", determination: "COMPROMISED_ACCOUNT" } });
    assert.equal(result.body.errors, undefined, result.text.slice(0, 300));
    assert.deepEqual(result.body.data.updateIncident, { backend: "DEFENDER", classification: "TRUE_POSITIVE", determination: "COMPROMISED_ACCOUNT" });
    assert.equal(endpoint("defender.patch"), patches + 1);
    const stored = runtime.sandbox!.incidents.get(defenderTenant.id, record.incidentId)!;
    assert.deepEqual([stored.classification, stored.determination], ["TruePositive", "CompromisedUser"]);
  });

  it("Graph tenant: each public value is sent as the published alertDetermination member the sandbox accepts", async () => {
    const record = activeIncident(graphTenant);
    const cases: [Record<string, unknown>, string, string][] = [
      [{ classification: "TRUE_POSITIVE", determination: "COMPROMISED_ACCOUNT" }, "TruePositive", "CompromisedUser"],
      // No TruePositive rule on Graph: the classification's own determinations are written as they are.
      [{ classification: "FALSE_POSITIVE", determination: "NOT_MALICIOUS" }, "FalsePositive", "Clean"],
      [{ classification: "FALSE_POSITIVE", determination: "NOT_ENOUGH_DATA_TO_VALIDATE" }, "FalsePositive", "InsufficientData"],
      [{ classification: "INFORMATIONAL_EXPECTED_ACTIVITY", determination: "CONFIRMED_USER_ACTIVITY" }, "InformationalExpectedActivity", "ConfirmedUserActivity"],
    ];
    for (const [input, classification, determination] of cases) {
      const patches = endpoint("graph.patch");
      const result = await gql({ t: graphTenant.id, i: String(record.incidentId), input });
      assert.equal(result.body.errors, undefined, `${JSON.stringify(input)}: ${result.text.slice(0, 300)}`);
      assert.equal(result.body.data.updateIncident.backend, "GRAPH");
      assert.equal(result.body.data.updateIncident.determination, input.determination);
      assert.equal(endpoint("graph.patch"), patches + 1, "one PATCH, accepted");
      const stored = runtime.sandbox!.incidents.get(graphTenant.id, record.incidentId)!;
      assert.deepEqual([stored.classification, stored.determination], [classification, determination]);
    }
    // UNKNOWN is no value to write on Graph either: refused before any call.
    const before = total();
    const refused = await gql({ t: graphTenant.id, i: String(record.incidentId), input: { determination: "UNKNOWN" } });
    assert.equal(refused.body.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
    assert.equal(total(), before);
  });
});
