import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import { postGraphQL } from "../helpers/graphql.js";

const METRICS_TOKEN = `metrics-${"k".repeat(40)}`;
const INCIDENTS = "query($ids: [ID!]) { incidents(tenantIds: $ids, first: 5) { totalCount tenantOutcomes { ok } } }";

/** Opens a raw TCP connection to a base URL and collects everything it receives. */
async function rawConnection(baseUrl: string): Promise<{ socket: Socket; received: () => string; firstData: Promise<unknown> }> {
  const { hostname, port } = new URL(baseUrl);
  const socket = connect({ host: hostname, port: Number(port) });
  await once(socket, "connect");
  let text = "";
  socket.setEncoding("latin1");
  socket.on("data", (chunk: string) => (text += chunk));
  // A reset after the answer is fine: the test reads what arrived before it.
  socket.on("error", () => {});
  return { socket, received: () => text, firstData: once(socket, "data") };
}

/** Waits (on the app's own counters, not on the clock) until `condition` holds. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(5);
}

/**
 * The HTTP layer under hostile clients (issue 12, items 4, 10, 12), closed sandbox (AUTH_ANONYMOUS=false,
 * an API key): metrics only on their own listener and behind METRICS_TOKEN, a slow body cut off by
 * REQUEST_TIMEOUT_MS, an unauthenticated body refused before it is sent, and admission control that keeps
 * /healthz answering while operations are held in flight.
 */
describe("HTTP hardening: metrics listener, request timeouts, authentication before the body, admission", () => {
  let runtime: Runtime;
  let key: string;
  let contoso: string;

  before(async () => {
    runtime = await startRuntime(
      loadConfig({
        PORT: "0",
        LOG_LEVEL: "silent",
        DATA_DIR: "memory://",
        // No background sync engine: a query on a tenant never synced waits for its (held) sync, which keeps it in flight.
        INCIDENT_SYNC: "false",
        AUTH_ANONYMOUS: "false",
        METRICS_TOKEN,
        REQUEST_TIMEOUT_MS: "1000",
        MAX_CONCURRENT_OPERATIONS: "2",
        MAX_QUEUED_OPERATIONS: "1",
      }),
    );
    key = (await runtime.app.store.apiKeys.create({ name: "admin", role: "ADMIN", scope: { allTenants: true, tenantIds: [], tenantTags: [] }, createdBy: "test" })).key;
    contoso = runtime.sandbox!.tenants.find((t) => t.displayName === "Contoso Ltd")!.id;
  });
  after(async () => {
    await runtime.close();
  });

  describe("metrics (item 4)", () => {
    it("serves no /metrics on the API listener", async () => {
      const response = await request(`${runtime.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      assert.equal(response.statusCode, 404);
      assert.ok(!(await response.body.text()).includes(contoso), "no tenant id on the API port");
    });

    it("serves them on a loopback listener of their own, only with METRICS_TOKEN", async () => {
      const url = new URL(runtime.app.metricsUrl!);
      assert.equal(url.hostname, "127.0.0.1");
      assert.equal(url.pathname, "/metrics");
      assert.notEqual(url.port, new URL(runtime.url).port);

      for (const headers of [{}, { authorization: `Bearer ${"x".repeat(METRICS_TOKEN.length)}` }, { authorization: METRICS_TOKEN }]) {
        const refused = await request(url, { headers });
        assert.equal(refused.statusCode, 401, JSON.stringify(headers));
        assert.match(String(refused.headers["www-authenticate"]), /^Bearer /);
        const text = await refused.body.text();
        assert.ok(!text.includes("crosswatch_") && !text.includes(METRICS_TOKEN), "no series and no token echoed");
      }
      const served = await request(url, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      assert.equal(served.statusCode, 200);
      assert.match(String(served.headers["content-type"]), /^text\/plain/);
      assert.match(await served.body.text(), /crosswatch_graphql_operations_in_flight 0/);
      const elsewhere = await request(new URL("/graphql", url), { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      assert.equal(elsewhere.statusCode, 404, "the metrics listener serves nothing else");
      await elsewhere.body.dump();
    });

    it("serves them without a token when none is configured (default: loopback only)", async () => {
      const open = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://" }));
      try {
        assert.equal(new URL(open.app.metricsUrl!).hostname, "127.0.0.1");
        const response = await request(open.app.metricsUrl!);
        assert.equal(response.statusCode, 200);
        assert.match(await response.body.text(), /process_resident_memory_bytes/);
        const api = await request(`${open.url}/metrics`);
        assert.equal(api.statusCode, 404);
        await api.body.dump();
      } finally {
        await open.close();
      }
    });
  });

  describe("request bodies (item 10)", () => {
    it("answers an unauthenticated POST with 401 before its body is sent, so the body is never read or parsed", async () => {
      const { socket, received, firstData } = await rawConnection(runtime.url);
      try {
        // Headers of a 650 KB body, and not one byte of it: the answer must come without it.
        socket.write(`POST /graphql HTTP/1.1\r\nHost: crosswatch\r\nContent-Type: application/json\r\nContent-Length: ${650 * 1024}\r\n\r\n`);
        await firstData;
        await until(() => received().includes("\r\n\r\n") && received().endsWith("\n"));
        const [head, body] = received().split("\r\n\r\n") as [string, string];
        assert.match(head, /^HTTP\/1\.1 401 /);
        assert.match(head, /\r\nwww-authenticate: Bearer realm="crosswatch"/i);
        assert.equal(JSON.parse(body.trim()).errors[0].extensions.code, "UNAUTHENTICATED");
      } finally {
        socket.destroy();
      }
    });

    it("closes the connection of a client whose body does not arrive within REQUEST_TIMEOUT_MS", async () => {
      const { socket, received } = await rawConnection(runtime.url);
      const closed = once(socket, "close");
      socket.write(
        `POST /graphql HTTP/1.1\r\nHost: crosswatch\r\nContent-Type: application/json\r\nAuthorization: Bearer ${key}\r\nContent-Length: 1000\r\n\r\n{"query":`,
      );
      // The rest of the body never comes: the server, not the client, ends the connection.
      await closed;
      assert.ok(received() === "" || /^HTTP\/1\.1 408 /.test(received()), received().slice(0, 80));
      // The admission slot the request held was given back.
      await until(() => runtime.app.operations().inFlight === 0);
    });

    it("still answers authenticated requests as before", async () => {
      const result = await postGraphQL(runtime.url, "{ viewer { kind } }", undefined, { authorization: `Bearer ${key}` });
      assert.equal(result.status, 200);
      assert.deepEqual(result.body.data, { viewer: { kind: "API_KEY" } });
    });
  });

  describe("liveness and admission control (item 12)", () => {
    it("answers /healthz and /readyz while operations fill every slot and the queue; one more gets 503 with Retry-After", async () => {
      const ctx = runtime.sandbox!.context;
      // Every incident call hangs until released: the operations stay in flight, held by the sandbox.
      ctx.setFault("*", { kind: "hang" });
      const gql = () => postGraphQL(runtime.url, INCIDENTS, { ids: [contoso] }, { authorization: `Bearer ${key}` });
      const held = [gql(), gql(), gql()];
      try {
        await until(() => {
          const s = runtime.app.operations();
          return s.inFlight === 2 && s.queued === 1;
        });
        const refusedBefore = runtime.app.operations().refused;

        const busy = await gql();
        assert.equal(busy.status, 503);
        assert.equal(busy.headers["retry-after"], "1");
        assert.equal(busy.body.errors?.[0]?.extensions?.code, "SERVER_BUSY");
        assert.equal(runtime.app.operations().refused, refusedBefore + 1);

        // Authentication comes first: a refused caller is told so, whatever the load.
        const anonymous = await postGraphQL(runtime.url, INCIDENTS, { ids: [contoso] });
        assert.equal(anonymous.status, 401);

        const health = await request(`${runtime.url}/healthz`);
        assert.equal(health.statusCode, 200);
        assert.equal(((await health.body.json()) as { status: string }).status, "ok");
        const ready = await request(`${runtime.url}/readyz`);
        assert.equal(ready.statusCode, 200);
        await ready.body.dump();
      } finally {
        ctx.clearFaults();
        for (const reply of ctx.hungReplies) reply.raw.socket?.destroy();
      }
      // Released: the held operations and the queued one are answered, and every slot is free again.
      for (const result of await Promise.all(held)) assert.equal(result.status, 200, result.text.slice(0, 200));
      await until(() => runtime.app.operations().inFlight === 0);
      assert.equal(runtime.app.operations().queued, 0);
    });

    it("gives a slot back when a waiting client goes away", async () => {
      const ctx = runtime.sandbox!.context;
      ctx.setFault("*", { kind: "hang" });
      const fabrikam = runtime.sandbox!.tenants.find((t) => t.displayName === "Fabrikam, Inc.")!.id;
      const gql = () => postGraphQL(runtime.url, INCIDENTS, { ids: [fabrikam] }, { authorization: `Bearer ${key}` });
      const held = [gql(), gql()];
      try {
        await until(() => runtime.app.operations().inFlight === 2);
        const { socket } = await rawConnection(runtime.url);
        const body = JSON.stringify({ query: INCIDENTS, variables: { ids: [fabrikam] } });
        socket.write(
          `POST /graphql HTTP/1.1\r\nHost: crosswatch\r\nContent-Type: application/json\r\nAuthorization: Bearer ${key}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
        await until(() => runtime.app.operations().queued === 1);
        socket.destroy();
        await until(() => runtime.app.operations().queued === 0);
      } finally {
        ctx.clearFaults();
        for (const reply of ctx.hungReplies) reply.raw.socket?.destroy();
      }
      for (const result of await Promise.all(held)) assert.equal(result.status, 200, result.text.slice(0, 200));
      await until(() => runtime.app.operations().inFlight === 0);
    });
  });
});
