import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createApp, type App } from "../../src/app.js";
import { loadConfig, type Config } from "../../src/config.js";
import { openStore, type Store } from "../../src/store/store.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

const ALL = { allTenants: true, tenantIds: [], tenantTags: [] };
const ERROR_LEVEL = 50;

/** A keyset cursor as the store encodes one, with any sequence value. */
const seqCursor = (kind: string, seq: string) => Buffer.from(JSON.stringify([kind, seq])).toString("base64url");

/**
 * Production mode (an Azure app configured, pointed at a sandbox) with API keys, as a hostile tester sees
 * it: no error describes schema the caller did not ask for, `_service` and inline traces are closed, and
 * malformed input is BAD_USER_INPUT (or a validation error), never an internal error with a stack in the log.
 */
describe("production mode: no schema leaks, bad input is not an internal error", () => {
  let t: TestSandbox;
  let store: Store;
  let app: App;
  let url: string;
  let adminKey: string;
  let readerKey: string;
  const logs = captureLogger("debug");
  const upstreamCalls = () => t.sandbox.context.counterSnapshot().total;

  const productionConfig = (extra: Record<string, string> = {}): Config => {
    const config = loadConfig({
      PORT: "0",
      LOG_LEVEL: "debug",
      DATA_DIR: "memory://",
      AZURE_CLIENT_ID: t.sandbox.clientId,
      AZURE_CLIENT_SECRET: t.sandbox.clientSecret,
      AZURE_AUTHORITY_HOST: t.sandbox.url,
      DEFENDER_API_BASE: t.sandbox.url,
      GRAPH_API_BASE: `${t.sandbox.url}/v1.0`,
      ...extra,
    });
    config.upstream.trustedCaPem = [t.sandbox.caCertPem];
    return config;
  };

  before(async () => {
    t = await startTestSandbox({ tenantCount: 3 });
    store = await openStore({});
    adminKey = (await store.apiKeys.create({ name: "admin", role: "ADMIN", scope: ALL, createdBy: "test" })).key;
    // As the tester had it: a reader key scoped to one tenant.
    const tenant = t.sandbox.tenants[0]!.id;
    readerKey = (
      await store.apiKeys.create({ name: "reader", role: "READER", scope: { allTenants: false, tenantIds: [tenant], tenantTags: [] }, createdBy: "test" })
    ).key;
    const config = productionConfig();
    assert.equal(config.mode, "azure");
    assert.equal(config.limits.introspection, false);
    app = await createApp(config, { logger: logs.logger, store });
    url = await app.listen();
  });
  after(async () => {
    await app?.close();
    await store?.close();
    await t?.close();
  });

  const asAdmin = (query: string, variables?: Record<string, unknown>, headers: Record<string, string> = {}) =>
    postGraphQL(url, query, variables, { authorization: `Bearer ${adminKey}`, ...headers });
  const asReader = (query: string, variables?: Record<string, unknown>, headers: Record<string, string> = {}) =>
    postGraphQL(url, query, variables, { authorization: `Bearer ${readerKey}`, ...headers });

  /**
   * Runs `send` and checks what it left behind: no upstream call, and no log line at error level, with a
   * stack trace, or with SQL in it.
   */
  const quietly = async (label: string, send: () => Promise<GraphQLResponse>): Promise<GraphQLResponse> => {
    const mark = logs.lines.length;
    const calls = upstreamCalls();
    const result = await send();
    const written = logs.lines.slice(mark);
    for (const line of written) {
      const level = (JSON.parse(line) as { level: number }).level;
      assert.ok(level < ERROR_LEVEL, `${label}: error-level log line: ${line.slice(0, 300)}`);
      assert.doesNotMatch(line, /"stack"|\n\s+at /, `${label}: stack trace in the log`);
      assert.doesNotMatch(line, /SELECT |bigint|api_keys|audit_events/, `${label}: SQL in the log`);
    }
    assert.equal(upstreamCalls(), calls, `${label}: no upstream call`);
    assert.doesNotMatch(result.text, /INTERNAL_SERVER_ERROR/, `${label}: ${result.text.slice(0, 300)}`);
    return result;
  };
  const codes = (result: GraphQLResponse) => (result.body.errors ?? []).map((e) => e.extensions?.code);

  describe("item 8: schema details", () => {
    it("says no 'Did you mean' in variable coercion errors: input fields and enum values", async () => {
      const cases: [string, string, Record<string, unknown>, RegExp][] = [
        [
          "misspelt input field",
          "query($f: AuditEventFilter) { auditEvents(filter: $f) { edges { cursor } } }",
          { f: { actionn: "key.create" } },
          /"action"/,
        ],
        [
          "misspelt enum value",
          'mutation($s: IncidentStatus!) { updateIncident(tenantId: "x", incidentId: "1", input: { status: $s }) { status } }',
          { s: "ACTIV" },
          /ACTIVE/,
        ],
        [
          "misspelt enum value inside an input object",
          'mutation($i: UpdateIncidentInput!) { updateIncident(tenantId: "x", incidentId: "1", input: $i) { status } }',
          { i: { status: "RESOLVD" } },
          /RESOLVED/,
        ],
        [
          "misspelt input field inside an input object",
          'mutation($i: UpdateIncidentInput!) { updateIncident(tenantId: "x", incidentId: "1", input: $i) { status } }',
          { i: { statuss: "RESOLVED" } },
          /"status"/,
        ],
      ];
      for (const [label, query, variables, suggestion] of cases) {
        const result = await quietly(label, () => asReader(query, variables));
        assert.equal(result.status, 400, `${label}: ${result.text}`);
        assert.deepEqual(codes(result), ["BAD_USER_INPUT"], label);
        const message = result.body.errors![0]!.message;
        assert.match(message, /^Variable "\$\w" got invalid value/, label);
        assert.doesNotMatch(message, /Did you mean/i, `${label}: ${message}`);
        assert.doesNotMatch(message, suggestion, `${label}: names what the caller did not ask for: ${message}`);
      }
    });

    it("says no 'Did you mean' in validation errors either", async () => {
      const result = await quietly("misspelt field", () => asReader("{ serverInf { mode } viewer { nam } }"));
      assert.equal(result.status, 400);
      assert.ok(result.body.errors!.length >= 2);
      for (const error of result.body.errors!) assert.doesNotMatch(error.message, /Did you mean/i);
    });

    it("refuses _service { sdl } to a reader and answers it to an admin over every tenant", async () => {
      const refused = await quietly("_service as reader", () => asReader("{ _service { sdl } }"));
      assert.deepEqual(codes(refused), ["FORBIDDEN"]);
      assert.equal(refused.body.data, null);
      assert.doesNotMatch(refused.text, /type Tenant|@key/);
      // An alias or a fragment reaches the same field, and the same check.
      const aliased = await asReader("query { s: _service { ...F } } fragment F on _Service { sdl }");
      assert.deepEqual(codes(aliased), ["FORBIDDEN"]);
      assert.doesNotMatch(aliased.text, /type Tenant|@key/);

      const answered = await asAdmin("{ _service { sdl } }");
      assert.equal(answered.body.errors, undefined, answered.text.slice(0, 300));
      assert.match(answered.body.data._service.sdl, /type Tenant\s+@key\(fields: "id"\)/);
    });

    it("ignores apollo-federation-include-trace: ftv1 unless FEDERATION_TRACING is on", async () => {
      const trace = { "apollo-federation-include-trace": "ftv1" };
      const closed = await asReader("{ serverInfo { mode } }", undefined, trace);
      assert.equal(closed.body.errors, undefined);
      assert.equal(closed.body.data.serverInfo.mode, "AZURE");
      assert.equal((closed.body as { extensions?: Record<string, unknown> }).extensions?.ftv1, undefined, closed.text);
      assert.doesNotMatch(closed.text, /ftv1/);

      const traced = await createApp(productionConfig({ FEDERATION_TRACING: "true" }), { logger: logs.logger, store });
      try {
        const tracedUrl = await traced.listen();
        const open = await postGraphQL(tracedUrl, "{ serverInfo { mode } }", undefined, { authorization: `Bearer ${readerKey}`, ...trace });
        assert.equal(typeof (open.body as { extensions?: Record<string, unknown> }).extensions?.ftv1, "string", "enabled: the trace is answered");
      } finally {
        await traced.close();
      }
    });
  });

  describe("item 9: bad input is BAD_USER_INPUT, not an internal error", () => {
    it("refuses cursors beyond bigint on apiKeys and auditEvents, with no SQL in the log", async () => {
      for (const seq of ["9223372036854775808", "9999999999999999999"]) {
        const keys = await quietly(`apiKeys after ${seq}`, () =>
          asAdmin("query($a: String) { apiKeys(after: $a) { edges { cursor } } }", { a: seqCursor("k1", seq) }),
        );
        assert.deepEqual(codes(keys), ["BAD_USER_INPUT"], keys.text);
        assert.equal(keys.body.errors![0]!.extensions?.field, "after");
        const audit = await quietly(`auditEvents after ${seq}`, () =>
          asAdmin("query($a: String) { auditEvents(after: $a) { edges { cursor } } }", { a: seqCursor("a1", seq) }),
        );
        assert.deepEqual(codes(audit), ["BAD_USER_INPUT"], audit.text);
        assert.equal(audit.body.errors![0]!.extensions?.field, "after");
      }
    });

    it("refuses _entities representations without an entity __typename, each for itself", async () => {
      const query = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { id } ... on Incident { incidentId } } }";
      const representations = [
        { id: t.sandbox.tenants[0]!.id },
        { __typename: "NoSuchType", id: "x" },
        { __typename: "Query" },
        { __typename: "ServerInfo", mode: "AZURE" },
        { __typename: 42 },
        "Tenant",
      ];
      const result = await quietly("_entities with bad __typename", () => asAdmin(query, { r: representations }));
      assert.equal(result.status, 200);
      assert.deepEqual(result.body.data._entities, representations.map(() => null));
      const byIndex = new Map(result.body.errors!.map((e) => [(e.path as unknown[])[1], e]));
      assert.equal(byIndex.size, representations.length, result.text.slice(0, 500));
      for (const [index, error] of byIndex) {
        assert.equal(error.extensions?.code, "BAD_USER_INPUT", `representation ${String(index)}: ${error.message}`);
        assert.equal(error.extensions?.field, "representations");
      }
      assert.match(byIndex.get(0)!.message, /^representations\[0\] has no __typename$/);
      // The reason never repeats what was sent.
      assert.doesNotMatch(result.text, /NoSuchType/);
    });

    it("still resolves the valid representations of a call that carries bad ones", async () => {
      const tenant = t.sandbox.tenants[0]!;
      await store.tenants.register({ id: tenant.id, displayName: tenant.displayName, tags: [] });
      const result = await quietly("_entities mixed", () =>
        asAdmin("query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { id displayName } } }", {
          r: [{ __typename: "Nope" }, { __typename: "Tenant", id: tenant.id }],
        }),
      );
      assert.equal(result.body.data._entities[0], null);
      assert.equal(result.body.data._entities[1].displayName, tenant.displayName);
      assert.deepEqual(result.body.errors!.map((e) => [e.path, e.extensions?.code]), [[["_entities", 0], "BAD_USER_INPUT"]]);
    });

    it("refuses every subscription operation as unsupported at validation", async () => {
      for (const query of ["subscription { incidents { totalCount } }", "subscription Watch { anything }", "subscription { __typename }"]) {
        const result = await quietly(query, () => asReader(query));
        assert.equal(result.status, 400, result.text);
        assert.deepEqual(codes(result), ["GRAPHQL_VALIDATION_FAILED"]);
        assert.match(result.body.errors![0]!.message, /subscriptions are not supported/);
      }
    });
  });
});
