import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { postGraphQL } from "../helpers/graphql.js";

/**
 * `npm start`'s process under SIGTERM, with its background sync engine on (the default): it drains the
 * operation in flight, stops the engine, ends the syncs still running, closes everything and exits 0.
 */
describe("graceful shutdown of the process", () => {
  it("answers an operation in flight after SIGTERM, then exits 0 and stops listening", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: {
        ...process.env,
        PORT: "0",
        DATA_DIR: "memory://",
        LOG_LEVEL: "debug",
        SANDBOX_LATENCY_MS: "800",
        AZURE_CLIENT_ID: "",
        // A query waits for a never-synced tenant's whole first sync run, not only its first page: the answer
        // below is then the tenant's complete list, whatever the engine had done by the time the query came.
        INCIDENT_FIRST_LOAD_WAIT_MS: "60000",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: string[] = [];
    const errors: string[] = [];
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => errors.push(chunk));
    let started: { graphqlUrl: string; metricsUrl: string } | undefined;
    const ready = new Promise<{ graphqlUrl: string; metricsUrl: string }>((resolve, reject) => {
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        for (const line of chunk.split("\n").filter(Boolean)) {
          lines.push(line);
          const parsed = started ? undefined : (JSON.parse(line) as { graphqlUrl?: string; metricsUrl?: string });
          if (parsed?.graphqlUrl && parsed.metricsUrl && !started) {
            started = { graphqlUrl: parsed.graphqlUrl, metricsUrl: parsed.metricsUrl };
            resolve(started);
          }
        }
      });
      child.once("exit", (code) => reject(new Error(`exited early with ${code}`)));
    });
    const { graphqlUrl, metricsUrl } = await ready;
    const base = graphqlUrl.replace(/\/graphql$/, "");
    // A small tenant (one list page): its sync ends while the engine's first loads of the large ones are still
    // reading pages, so the shutdown has syncs to end after the drain.
    const tenants = await postGraphQL(base, "{ tenants(first: 100) { edges { node { id displayName } } } }");
    const id = (tenants.body.data.tenants.edges as { node: { id: string; displayName: string } }[]).find((e) => e.node.displayName === "Trey Research")!.node.id;
    const inFlightNow = async () => Number(/^crosswatch_graphql_operations_in_flight (\d+)$/m.exec(await (await fetch(metricsUrl)).text())?.[1]);

    // maxAgeSeconds 0: the operation waits for a sync of the tenant that ends after it came (the engine's
    // first load, or a delta when that one is done), so the sandbox's 800 ms per call hold it in flight.
    let settled = false;
    const inFlight = postGraphQL(base, "query($ids: [ID!]) { incidents(tenantIds: $ids, first: 1, maxAgeSeconds: 0) { totalCount tenantOutcomes { ok complete syncState } } }", {
      ids: [id],
    }).finally(() => (settled = true));
    // SIGTERM once the server has admitted it and is running it (its own metrics say so), not after a guessed while.
    while ((await inFlightNow()) !== 1) {
      assert.equal(settled, false, "the operation was answered before it could be seen in flight");
      await sleep(10);
    }
    const exited = once(child, "exit");
    const signalled = lines.length;
    child.kill("SIGTERM");
    const answered = await inFlight;
    assert.equal(answered.status, 200);
    assert.deepEqual(answered.body.data.incidents.tenantOutcomes, [{ ok: true, complete: true, syncState: "FRESH" }], "the slow tenant answered during the drain");
    assert.ok(answered.body.data.incidents.totalCount > 0);
    const [code, signal] = await exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, [...lines.slice(-4), ...errors].join("\n"));
    const after = lines.slice(signalled);
    // In this order: the drain (the operation's own log line), the HTTP server closed, then (once the syncs
    // still running had been ended and waited for) the upstream connections and the store closed.
    const steps = ["draining operations in flight", '"graphql operation"', "http server closed: operations drained", "upstream connections closed", "store closed"];
    const at = steps.map((text) => after.findIndex((l) => l.includes(text)));
    assert.ok(
      at.every((i, k) => i >= 0 && (k === 0 || i > at[k - 1]!)),
      `${JSON.stringify(Object.fromEntries(steps.map((s, k) => [s, at[k]])))}\n${after.join("\n")}`,
    );
    // Syncs ended by the shutdown are not failures: none is logged as one (the only failure expected is the
    // seeded role-less tenant's). Nothing logs an error, as a sync writing to a closed store would.
    assert.deepEqual(
      after.filter((l) => l.includes('"tenant incidents sync failed"') && !l.includes('"MISSING_ROLE"')),
      [],
      "a sync ended by the shutdown was reported as failed",
    );
    assert.deepEqual(
      after.filter((l) => (JSON.parse(l) as { level: number }).level >= 50),
      [],
    );
    assert.equal(errors.join(""), "");
    await assert.rejects(fetch(`${base}/healthz`));
  });
});
