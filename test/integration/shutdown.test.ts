import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, it } from "node:test";
import { postGraphQL } from "../helpers/graphql.js";

/** `npm start`'s process under SIGTERM: it drains the operation in flight, closes everything, exits 0. */
describe("graceful shutdown of the process", () => {
  it("answers an operation in flight after SIGTERM, then exits 0 and stops listening", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: { ...process.env, PORT: "0", DATA_DIR: "memory://", LOG_LEVEL: "debug", SANDBOX_LATENCY_MS: "800", AZURE_CLIENT_ID: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: string[] = [];
    const errors: string[] = [];
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => errors.push(chunk));
    let graphqlUrl: string | undefined;
    const ready = new Promise<string>((resolve, reject) => {
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        for (const line of chunk.split("\n").filter(Boolean)) {
          lines.push(line);
          const url = graphqlUrl ? undefined : (JSON.parse(line) as { graphqlUrl?: string }).graphqlUrl;
          if (url && !graphqlUrl) {
            graphqlUrl = url;
            resolve(url);
          }
        }
      });
      child.once("exit", (code) => reject(new Error(`exited early with ${code}`)));
    });
    const base = (await ready).replace(/\/graphql$/, "");
    const tenants = await postGraphQL(base, "{ tenants(first: 1) { edges { node { id } } } }");
    const id = tenants.body.data.tenants.edges[0].node.id;

    const seen = lines.length;
    const inFlight = postGraphQL(base, "query($ids: [ID!]) { incidents(tenantIds: $ids, first: 1) { tenantOutcomes { ok } } }", { ids: [id] });
    // SIGTERM once the operation is in flight: its token has come (a debug line), and its list call, held
    // 800 ms by the sandbox's latency, is next. Not after a guessed while a loaded machine may not reach it in.
    while (!lines.slice(seen).some((l) => l.includes('"access token acquired"'))) await once(child.stdout, "data");
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const answered = await inFlight;
    assert.equal(answered.status, 200);
    assert.equal(answered.body.data.incidents.tenantOutcomes[0].ok, true, "the slow tenant answered during the drain");
    const [code, signal] = await exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, [...lines.slice(-4), ...errors].join("\n"));
    assert.ok(lines.some((l) => l.includes("draining operations in flight")));
    await assert.rejects(fetch(`${base}/healthz`));
  });
});
