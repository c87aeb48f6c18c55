import assert from "node:assert/strict";
import { createPrivateKey, randomUUID, type KeyObject } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  ConfidentialClientApplication,
  ServerError,
  type Configuration,
  type INetworkModule,
  type NetworkRequestOptions,
  type NetworkResponse,
} from "@azure/msal-node";
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT, type JWTPayload } from "jose";
import { UndiciNetworkClient } from "../../src/auth/network-client.js";
import { createClientCertificate } from "../../src/sandbox/certs.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { startTestSandbox, type RawResponse, type TestSandbox } from "../helpers/sandbox.js";

/*
 * Shapes of real captured responses (shared/fixtures/captured, section 3 of its README), copied here so the
 * test runs anywhere: key order and value types are what the sandbox must reproduce.
 */
/** aad-token-v1-client-credentials.sunbird.json */
const CAPTURED_V1_TOKEN = {
  token_type: "Bearer",
  expires_in: "3599",
  ext_expires_in: "3599",
  expires_on: "1605789466",
  not_before: "1605785566",
  resource: "https://management.core.windows.net/",
  access_token: "testToken",
};
/** aad-token-v2-client-credentials.azure-sdk-for-js.json */
const CAPTURED_V2_TOKEN = { token_type: "Bearer", expires_in: 86399, ext_expires_in: 86399, access_token: "access_token" };
/** aad-error-7000215.kubelogin.json */
const CAPTURED_ERROR = {
  error: "invalid_client",
  error_description:
    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '00001111-aaaa-2222-bbbb-3333cccc4444'.\r\nTrace ID: e288cfe3-e86b-4c8c-a283-25a5ab41ca00\r\nCorrelation ID: ebb366a6-d8f5-493e-8f2f-b94c502283c7\r\nTimestamp: 2023-05-30 21:44:17Z",
  error_codes: [7000215],
  timestamp: "2023-05-30 21:44:17Z",
  trace_id: "e288cfe3-e86b-4c8c-a283-25a5ab41ca00",
  correlation_id: "ebb366a6-d8f5-493e-8f2f-b94c502283c7",
  error_uri: "https://login.microsoftonline.com/error?code=7000215",
};

const DEFENDER = "https://api.security.microsoft.com";
const DEFENDER_SCOPE = `${DEFENDER}/.default`;
const GRAPH_SCOPE = "https://graph.microsoft.com/.default";
const JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const VALID_SECRET = "Abc8Q~valid-secret-of-the-sandbox-app-0001";
const EXPIRED_SECRET = "Old8Q~expired-secret-of-the-sandbox-app-01";

/** Same key order and the same JSON type for every key as the captured body. */
function assertSameShape(actual: Record<string, unknown>, captured: Record<string, unknown>): void {
  assert.deepEqual(Object.keys(actual), Object.keys(captured));
  for (const key of Object.keys(captured)) {
    assert.equal(typeof actual[key], typeof captured[key], `type of ${key}`);
  }
}

/** An Entra error answer: status, `error`, one AADSTS code, captured body shape, description framing. */
function assertAadError(response: RawResponse, status: number, error: string, code: number): string {
  assert.equal(response.status, status, response.text);
  const body = response.json;
  assertSameShape(body, CAPTURED_ERROR);
  assert.equal(body.error, error);
  assert.deepEqual(body.error_codes, [code]);
  assert.match(body.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  assert.match(body.trace_id, GUID);
  assert.match(body.correlation_id, GUID);
  assert.ok(body.error_description.startsWith(`AADSTS${code}: `), body.error_description);
  assert.ok(
    body.error_description.endsWith(
      `\r\nTrace ID: ${body.trace_id}\r\nCorrelation ID: ${body.correlation_id}\r\nTimestamp: ${body.timestamp}`,
    ),
  );
  assert.equal(body.error_uri, `https://login.microsoftonline.com/error?code=${code}`);
  assert.equal(response.headers["x-ms-request-id"], body.trace_id);
  return body.error_description as string;
}

/** MSAL's network module, recording every call it makes so tests can look at what MSAL really sent. */
class RecordingNetworkClient implements INetworkModule {
  readonly calls: { method: string; url: string; body: string | undefined }[] = [];
  constructor(private readonly inner: INetworkModule) {}
  sendGetRequestAsync<T>(url: string, options?: NetworkRequestOptions, timeout?: number): Promise<NetworkResponse<T>> {
    this.calls.push({ method: "GET", url, body: undefined });
    return this.inner.sendGetRequestAsync<T>(url, options, timeout);
  }
  sendPostRequestAsync<T>(url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    this.calls.push({ method: "POST", url, body: options?.body });
    return this.inner.sendPostRequestAsync<T>(url, options);
  }
}

describe("sandbox Entra ID: token endpoints, discovery, keys", () => {
  let t: TestSandbox;
  let cert: Awaited<ReturnType<typeof createClientCertificate>>;
  let stranger: Awaited<ReturnType<typeof createClientCertificate>>;
  let certKey: KeyObject;
  let strangerKey: KeyObject;

  const tenant = (name: string): SandboxTenant => {
    const found = t.sandbox.tenants.find((x) => x.domain === `${name}.onmicrosoft.com`);
    assert.ok(found, name);
    return found;
  };
  const tokenCount = (tenantId: string): number => t.sandbox.context.counterSnapshot().byTenant[tenantId]?.token ?? 0;
  const v2Form = (extra: Record<string, string> = {}): Record<string, string> => ({
    grant_type: "client_credentials",
    client_id: t.sandbox.clientId,
    client_secret: VALID_SECRET,
    scope: DEFENDER_SCOPE,
    ...extra,
  });
  const v1Form = (extra: Record<string, string> = {}): Record<string, string> => ({
    grant_type: "client_credentials",
    client_id: t.sandbox.clientId,
    client_secret: VALID_SECRET,
    resource: DEFENDER,
    ...extra,
  });
  const postV2 = (tenantSegment: string, form: Record<string, string>) => t.call("POST", `/${tenantSegment}/oauth2/v2.0/token`, { form });
  const postV1 = (tenantSegment: string, form: Record<string, string>) => t.call("POST", `/${tenantSegment}/oauth2/token`, { form });

  const msal = (auth: Partial<Configuration["auth"]>, tenantId: string, network?: INetworkModule) =>
    new ConfidentialClientApplication({
      auth: {
        clientId: t.sandbox.clientId,
        authority: `${t.sandbox.url}/${tenantId}`,
        knownAuthorities: [`localhost:${t.sandbox.port}`],
        ...auth,
      },
      system: { networkClient: network ?? new UndiciNetworkClient(t.dispatcher) },
    });

  /** A client assertion as a client library builds one; every part can be spoiled for the error cases. */
  const assertion = async (options: {
    tenantSegment: string;
    alg?: "PS256" | "RS256";
    thumbprint?: "x5t#S256" | "x5t" | "none";
    of?: "registered" | "stranger";
    signWith?: KeyObject;
    aud?: string;
    iss?: string;
    sub?: string;
    exp?: number;
    nbf?: number;
  }): Promise<string> => {
    const credential = (options.of ?? "registered") === "registered" ? cert.credential : stranger.credential;
    const header: Record<string, string> = { alg: options.alg ?? "PS256", typ: "JWT" };
    const thumbprint = options.thumbprint ?? "x5t#S256";
    if (thumbprint === "x5t#S256") header["x5t#S256"] = credential.x5tS256;
    if (thumbprint === "x5t") header.x5t = credential.x5t;
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ jti: randomUUID() })
      .setProtectedHeader(header as { alg: string })
      .setAudience(options.aud ?? `${t.sandbox.url}/${options.tenantSegment}/oauth2/v2.0/token`)
      .setIssuer(options.iss ?? t.sandbox.clientId)
      .setSubject(options.sub ?? t.sandbox.clientId)
      .setNotBefore(options.nbf ?? now)
      .setExpirationTime(options.exp ?? now + 600)
      .sign(options.signWith ?? certKey);
  };
  const assertionForm = (clientAssertion: string, extra: Record<string, string> = {}): Record<string, string> => ({
    grant_type: "client_credentials",
    client_id: t.sandbox.clientId,
    client_assertion_type: JWT_BEARER,
    client_assertion: clientAssertion,
    scope: DEFENDER_SCOPE,
    ...extra,
  });

  before(async () => {
    [cert, stranger] = await Promise.all([createClientCertificate(), createClientCertificate("CN=Somebody else")]);
    certKey = createPrivateKey(cert.privateKeyPem);
    strangerKey = createPrivateKey(stranger.privateKeyPem);
    t = await startTestSandbox({
      app: {
        certificates: [cert.credential],
        secrets: [
          { id: randomUUID(), value: VALID_SECRET, expiresAt: Date.now() + 86_400_000 },
          { id: randomUUID(), value: EXPIRED_SECRET, expiresAt: Date.now() - 60_000 },
        ],
      },
    });
  });
  after(async () => {
    await t.close();
  });

  describe("MSAL Node against the sandbox authority", () => {
    it("acquires a Defender token with a client secret, then serves it from its cache", async () => {
      const contoso = tenant("contoso");
      const network = new RecordingNetworkClient(new UndiciNetworkClient(t.dispatcher));
      const app = msal({ clientSecret: VALID_SECRET }, contoso.id, network);
      const before = tokenCount(contoso.id);

      const first = await app.acquireTokenByClientCredential({ scopes: [DEFENDER_SCOPE] });
      assert.ok(first);
      assert.equal(first.fromCache, false);
      assert.equal(first.tokenType, "Bearer");
      const claims = decodeJwt(first.accessToken);
      assert.equal(claims.tid, contoso.id);
      assert.equal(claims.aud, DEFENDER);
      assert.equal(claims.iss, `https://sts.windows.net/${contoso.id}/`);
      assert.equal(claims.ver, "1.0");
      assert.equal(claims.appid, t.sandbox.clientId);
      assert.equal(claims.appidacr, "1");
      assert.deepEqual(claims.roles, ["Incident.ReadWrite.All"]);
      assert.equal(claims.oid, contoso.servicePrincipalId);
      assert.equal(tokenCount(contoso.id), before + 1);

      // MSAL found the endpoints through the sandbox's v2 discovery document, then posted the form.
      assert.deepEqual(
        network.calls.map((c) => `${c.method} ${new URL(c.url).pathname}`),
        [`GET /${contoso.id}/v2.0/.well-known/openid-configuration`, `POST /${contoso.id}/oauth2/v2.0/token`],
      );
      assert.match(network.calls[1]!.url, /\?client-request-id=[0-9a-f-]{36}/);
      assert.equal(new URLSearchParams(network.calls[1]!.body).get("x-client-SKU"), "msal.js.node");

      const second = await app.acquireTokenByClientCredential({ scopes: [DEFENDER_SCOPE] });
      assert.ok(second);
      assert.equal(second.fromCache, true);
      assert.equal(second.accessToken, first.accessToken);
      assert.equal(tokenCount(contoso.id), before + 1, "the cached token costs no token call");
    });

    it("acquires a token with a certificate: PS256 assertion with x5t#S256, appidacr 2", async () => {
      const fabrikam = tenant("fabrikam");
      const network = new RecordingNetworkClient(new UndiciNetworkClient(t.dispatcher));
      const app = msal(
        { clientCertificate: { thumbprintSha256: cert.credential.thumbprintSha256, privateKey: cert.privateKeyPem } },
        fabrikam.id,
        network,
      );
      const result = await app.acquireTokenByClientCredential({ scopes: [DEFENDER_SCOPE] });
      assert.ok(result);
      const claims = decodeJwt(result.accessToken);
      assert.equal(claims.tid, fabrikam.id);
      assert.equal(claims.appidacr, "2");
      assert.deepEqual(claims.roles, ["Incident.ReadWrite.All"]);

      const sent = new URLSearchParams(network.calls.find((c) => c.method === "POST")!.body);
      assert.equal(sent.get("client_assertion_type"), JWT_BEARER);
      assert.equal(sent.get("client_secret"), null);
      const header = decodeProtectedHeader(sent.get("client_assertion")!);
      assert.equal(header.alg, "PS256");
      assert.equal(header["x5t#S256"], cert.credential.x5tS256);
    });

    it("accepts MSAL's older RS256 assertion with a SHA-1 x5t", async () => {
      const northwind = tenant("northwindtraders");
      const app = msal(
        { clientCertificate: { thumbprint: cert.credential.thumbprintSha1, privateKey: cert.privateKeyPem } },
        northwind.id,
      );
      const result = await app.acquireTokenByClientCredential({ scopes: [DEFENDER_SCOPE] });
      assert.ok(result);
      assert.equal(decodeJwt(result.accessToken).appidacr, "2");
    });

    it("serves two tenants from one client through the per-request authority, caching per tenant", async () => {
      const [a, b] = [tenant("woodgrovebank"), tenant("wideworldimporters")];
      const app = msal({ clientSecret: VALID_SECRET }, a.id);
      const get = (tenantId: string) =>
        app.acquireTokenByClientCredential({ scopes: [DEFENDER_SCOPE], authority: `${t.sandbox.url}/${tenantId}` });
      const [ra, rb] = [await get(a.id), await get(b.id)];
      assert.equal(decodeJwt(ra!.accessToken).tid, a.id);
      assert.equal(decodeJwt(rb!.accessToken).tid, b.id);
      const counts = [tokenCount(a.id), tokenCount(b.id)];
      const [ca, cb] = [await get(a.id), await get(b.id)];
      assert.equal(ca!.fromCache, true);
      assert.equal(cb!.fromCache, true);
      assert.equal(decodeJwt(cb!.accessToken).tid, b.id);
      assert.deepEqual([tokenCount(a.id), tokenCount(b.id)], counts);
    });

    it("surfaces each AADSTS error as a ServerError with the error and the code", async () => {
      const expectServerError = async (
        auth: Partial<Configuration["auth"]>,
        tenantId: string,
        scope: string,
        errorCode: string,
        code: number,
      ): Promise<ServerError> => {
        const app = msal(auth, tenantId);
        const error = await app.acquireTokenByClientCredential({ scopes: [scope] }).then(
          () => assert.fail("expected a ServerError"),
          (e: unknown) => e,
        );
        assert.ok(error instanceof ServerError, String(error));
        assert.equal(error.errorCode, errorCode);
        assert.match(error.message, new RegExp(`AADSTS${code}:`));
        return error;
      };
      const alpine = tenant("alpineskihouse");
      const notConsented = await expectServerError({ clientSecret: VALID_SECRET }, alpine.id, DEFENDER_SCOPE, "unauthorized_client", 700016);
      assert.match(notConsented.message, /alpineskihouse\.onmicrosoft\.com/);
      await expectServerError({ clientSecret: "not-the-secret" }, tenant("contoso").id, DEFENDER_SCOPE, "invalid_client", 7000215);
      await expectServerError({ clientSecret: EXPIRED_SECRET }, tenant("contoso").id, DEFENDER_SCOPE, "invalid_client", 7000222);
      const graphOnly = await expectServerError({ clientSecret: VALID_SECRET }, tenant("proseware").id, DEFENDER_SCOPE, "invalid_resource", 500011);
      assert.match(graphOnly.message, /resource principal named https:\/\/api\.security\.microsoft\.com was not found/);

      const options = t.sandbox.context.options;
      options.notConsentedError = 7000229;
      try {
        const missing = await expectServerError({ clientSecret: VALID_SECRET }, alpine.id, DEFENDER_SCOPE, "invalid_client", 7000229);
        assert.match(missing.message, new RegExp(alpine.id));
      } finally {
        options.notConsentedError = 700016;
      }
    });

    it("gives a tenant that consented without the incident roles a token anyway, without those roles", async () => {
      const coho = tenant("cohowinery");
      const app = msal({ clientSecret: VALID_SECRET }, coho.id);
      const defender = decodeJwt((await app.acquireTokenByClientCredential({ scopes: [DEFENDER_SCOPE] }))!.accessToken);
      assert.equal(defender.tid, coho.id);
      assert.deepEqual(defender.roles, ["AdvancedHunting.Read.All"]);
      const graph = decodeJwt((await app.acquireTokenByClientCredential({ scopes: [GRAPH_SCOPE] }))!.accessToken);
      assert.equal(graph.aud, "https://graph.microsoft.com");
      assert.equal("roles" in graph, false, "no roles granted: no roles claim");
    });
  });

  describe("token endpoint over raw HTTP", () => {
    it("answers v1 like the captured response: string numbers, expires_on, not_before, resource echoed", async () => {
      const contoso = tenant("contoso");
      const response = await postV1(contoso.id, v1Form({ resource: `${DEFENDER}/` }));
      assert.equal(response.status, 200, response.text);
      assertSameShape(response.json, CAPTURED_V1_TOKEN);
      const body = response.json;
      assert.equal(body.token_type, "Bearer");
      assert.equal(body.expires_in, "3599");
      assert.equal(body.ext_expires_in, "3599");
      assert.equal(body.resource, `${DEFENDER}/`);
      const claims = decodeJwt(body.access_token);
      assert.equal(Number(body.expires_on), claims.exp);
      assert.equal(Number(body.not_before), claims.iat! - 300);
      assert.equal(Number(body.expires_on) - Number(body.not_before), 3900, "as in the capture");
      assert.equal(response.headers["cache-control"], "no-store, no-cache");
      assert.equal(response.headers.pragma, "no-cache");
      assert.match(String(response.headers["x-ms-request-id"]), GUID);
      assert.match(String(response.headers["content-type"]), /^application\/json/);
    });

    it("answers v2 like the captured response: integers, four keys", async () => {
      const response = await postV2(tenant("contoso").id, v2Form());
      assert.equal(response.status, 200, response.text);
      assertSameShape(response.json, CAPTURED_V2_TOKEN);
      assert.equal(response.json.expires_in, 3599);
      assert.equal(response.json.ext_expires_in, 3599);
      assert.equal(response.headers["cache-control"], "no-store, no-cache");
    });

    it("accepts the tenant's domain in the path, HTTP Basic client authentication and unknown parameters", async () => {
      const contoso = tenant("contoso");
      const basic = Buffer.from(`${encodeURIComponent(t.sandbox.clientId)}:${encodeURIComponent(VALID_SECRET)}`).toString("base64");
      const response = await t.call("POST", `/${contoso.domain}/oauth2/v2.0/token?client-request-id=${randomUUID()}&x-made-up=1`, {
        form: { grant_type: "client_credentials", scope: DEFENDER_SCOPE, "x-client-SKU": "curl", claims: "{}" },
        headers: { authorization: `Basic ${basic}` },
      });
      assert.equal(response.status, 200, response.text);
      assert.equal(decodeJwt(response.json.access_token).tid, contoso.id);

      const wrong = Buffer.from(`${t.sandbox.clientId}:nope`).toString("base64");
      const refused = await t.call("POST", `/${contoso.id}/oauth2/v2.0/token`, {
        form: { grant_type: "client_credentials", scope: DEFENDER_SCOPE },
        headers: { authorization: `Basic ${wrong}` },
      });
      assertAadError(refused, 401, "invalid_client", 7000215);
    });

    it("uses the caller's client-request-id as the correlation id", async () => {
      const id = randomUUID();
      const response = await t.call("POST", `/${tenant("contoso").id}/oauth2/v2.0/token?client-request-id=${id}`, {
        form: v2Form({ client_secret: "wrong" }),
      });
      assertAadError(response, 401, "invalid_client", 7000215);
      assert.equal(response.json.correlation_id, id);
    });

    it("answers an unknown tenant with AADSTS90002 (invalid_request on the token endpoints)", async () => {
      for (const post of [postV1, postV2]) {
        const description = assertAadError(await post("nosuchtenant.onmicrosoft.com", v2Form()), 400, "invalid_request", 90002);
        assert.match(description, /^AADSTS90002: Tenant 'nosuchtenant\.onmicrosoft\.com' not found\./);
      }
      const guid = randomUUID();
      assert.match(assertAadError(await postV2(guid, v2Form()), 400, "invalid_request", 90002), new RegExp(guid));
    });

    it("answers an unknown client id and a tenant without consent with AADSTS700016 naming the directory", async () => {
      const contoso = tenant("contoso");
      const stranger = randomUUID();
      const unknown = assertAadError(await postV2(contoso.id, v2Form({ client_id: stranger })), 400, "unauthorized_client", 700016);
      assert.match(unknown, new RegExp(`Application with identifier '${stranger}' was not found in the directory 'contoso\\.onmicrosoft\\.com'`));
      const alpine = tenant("alpineskihouse");
      const before = tokenCount(alpine.id);
      for (const post of [postV1, postV2]) {
        const notConsented = assertAadError(await post(alpine.id, post === postV1 ? v1Form() : v2Form()), 400, "unauthorized_client", 700016);
        assert.match(notConsented, /'alpineskihouse\.onmicrosoft\.com'/);
      }
      assert.equal(tokenCount(alpine.id), before + 2, "refused calls are counted too");
    });

    it("answers AADSTS7000229 (401) for a tenant without consent when configured so", async () => {
      const options = t.sandbox.context.options;
      options.notConsentedError = 7000229;
      try {
        const alpine = tenant("alpineskihouse");
        const description = assertAadError(await postV2(alpine.id, v2Form()), 401, "invalid_client", 7000229);
        assert.match(description, new RegExp(`The client application ${t.sandbox.clientId} is missing service principal in the tenant ${alpine.id}`));
      } finally {
        options.notConsentedError = 700016;
      }
    });

    it("checks the client secret: wrong, expired, missing", async () => {
      const contoso = tenant("contoso");
      const wrong = assertAadError(await postV2(contoso.id, v2Form({ client_secret: "secret-id-instead-of-value" })), 401, "invalid_client", 7000215);
      assert.match(wrong, new RegExp(`secret added to app '${t.sandbox.clientId}'`));
      const expired = assertAadError(await postV1(contoso.id, v1Form({ client_secret: EXPIRED_SECRET })), 401, "invalid_client", 7000222);
      assert.match(expired, new RegExp(`The provided client secret keys for app '${t.sandbox.clientId}' are expired`));
      const form = v2Form();
      delete form.client_secret;
      const missing = assertAadError(await postV2(contoso.id, form), 401, "invalid_client", 7000218);
      assert.match(missing, /'client_assertion' or 'client_secret'/);
      assertAadError(await postV2(contoso.id, v2Form({ client_secret: "" })), 401, "invalid_client", 7000218);
    });

    it("checks grant_type, required fields and the scope", async () => {
      const id = tenant("contoso").id;
      assertAadError(await postV2(id, v2Form({ grant_type: "password" })), 400, "unsupported_grant_type", 70003);
      const without = (form: Record<string, string>, key: string) => {
        const copy = { ...form };
        delete copy[key];
        return copy;
      };
      assert.match(assertAadError(await postV2(id, without(v2Form(), "grant_type")), 400, "invalid_request", 900144), /'grant_type'/);
      assert.match(assertAadError(await postV2(id, without(v2Form(), "client_id")), 400, "invalid_request", 900144), /'client_id'/);
      assert.match(assertAadError(await postV2(id, without(v2Form(), "scope")), 400, "invalid_request", 900144), /'scope'/);
      assert.match(assertAadError(await postV1(id, without(v1Form(), "resource")), 400, "invalid_request", 900144), /'resource'/);
      const noDefault = assertAadError(await postV2(id, v2Form({ scope: `${DEFENDER}/Incident.Read.All` })), 400, "invalid_scope", 1002012);
      assert.match(noDefault, /Client credential flows must have a scope value with \/\.default suffixed/);
      assertAadError(await postV2(id, v2Form({ scope: `${DEFENDER_SCOPE} ${GRAPH_SCOPE}` })), 400, "invalid_scope", 70011);
      // OIDC scopes MSAL may add are ignored.
      assert.equal((await postV2(id, v2Form({ scope: `openid ${DEFENDER_SCOPE} offline_access` }))).status, 200);
      // Client credentials need a tenant: `common` cannot issue one.
      assertAadError(await postV2("common", v2Form()), 400, "invalid_request", 50059);
      assertAadError(await t.call("GET", `/${id}/oauth2/v2.0/token`), 400, "invalid_request", 900561);
    });

    it("answers AADSTS500011 for an unknown resource and for a resource missing in the tenant", async () => {
      const contoso = tenant("contoso");
      const v2 = assertAadError(await postV2(contoso.id, v2Form({ scope: "https://unknown.example.com/.default" })), 400, "invalid_resource", 500011);
      assert.match(v2, /resource principal named https:\/\/unknown\.example\.com was not found in the tenant named Contoso Ltd/);
      assertAadError(await postV1(contoso.id, v1Form({ resource: "https://api.securitycenter.microsoft.com" })), 400, "invalid_resource", 500011);

      const proseware = tenant("proseware");
      for (const post of [postV1, postV2]) {
        const description = assertAadError(await post(proseware.id, post === postV1 ? v1Form() : v2Form()), 400, "invalid_resource", 500011);
        assert.match(description, /^AADSTS500011: The resource principal named https:\/\/api\.security\.microsoft\.com was not found in the tenant named Proseware, Inc\./);
      }
      const graph = await postV2(proseware.id, v2Form({ scope: GRAPH_SCOPE }));
      assert.equal(graph.status, 200);
      assert.deepEqual(decodeJwt(graph.json.access_token).roles, ["SecurityIncident.ReadWrite.All"]);
      // The resource may also be named by its appId.
      const byAppId = await postV2(contoso.id, v2Form({ scope: "8ee8fdad-f234-4243-8f3b-15c294843740/.default" }));
      assert.equal(byAppId.status, 200);
    });

    it("issues v2-format tokens when configured, verifiable against the v2 key set", async () => {
      const options = t.sandbox.context.options;
      const contoso = tenant("contoso");
      options.accessTokenVersion = 2;
      try {
        const response = await postV2(contoso.id, v2Form());
        const token = response.json.access_token as string;
        const keys = await t.call("GET", `/${contoso.id}/discovery/v2.0/keys`);
        const { payload } = await jwtVerify(token, createLocalJWKSet(keys.json), {
          issuer: `${t.sandbox.url}/${contoso.id}/v2.0`,
          audience: "8ee8fdad-f234-4243-8f3b-15c294843740",
        });
        assert.equal(payload.ver, "2.0");
        assert.equal(payload.azp, t.sandbox.clientId);
        assert.equal(payload.azpacr, "1");
        assert.equal("appid" in payload, false);
        assert.equal(keys.json.keys[0].issuer, payload.iss);
      } finally {
        options.accessTokenVersion = 1;
      }
    });
  });

  describe("certificate client assertions", () => {
    it("accepts PS256 with x5t#S256 and RS256 with x5t, either token endpoint URL as audience", async () => {
      const contoso = tenant("contoso");
      const accepted: [string, string][] = [
        ["PS256 x5t#S256", await assertion({ tenantSegment: contoso.id })],
        ["RS256 x5t", await assertion({ tenantSegment: contoso.id, alg: "RS256", thumbprint: "x5t" })],
        ["v1 audience", await assertion({ tenantSegment: contoso.id, aud: `${t.sandbox.url}/${contoso.id}/oauth2/token` })],
        ["domain audience", await assertion({ tenantSegment: contoso.domain })],
      ];
      for (const [label, jwt] of accepted) {
        const response = await postV2(contoso.id, assertionForm(jwt));
        assert.equal(response.status, 200, `${label}: ${response.text}`);
        assert.equal(decodeJwt(response.json.access_token).appidacr, "2", label);
      }
      const v1 = await postV1(contoso.id, { ...assertionForm(await assertion({ tenantSegment: contoso.id, aud: `${t.sandbox.url}/${contoso.id}/oauth2/token` })), resource: DEFENDER });
      assert.equal(v1.status, 200, v1.text);
      assert.equal(v1.json.resource, DEFENDER);
    });

    it("refuses an unregistered certificate or a bad signature with AADSTS700027", async () => {
      const id = tenant("contoso").id;
      const unknown = assertAadError(
        await postV2(id, assertionForm(await assertion({ tenantSegment: id, of: "stranger", signWith: strangerKey }))),
        401,
        "invalid_client",
        700027,
      );
      assert.match(unknown, new RegExp(`Thumbprint of key used by client: '${stranger.credential.thumbprintSha256}'`));
      // The registered certificate's thumbprint, but signed with another key.
      const forged = await assertion({ tenantSegment: id, signWith: strangerKey });
      assert.match(assertAadError(await postV2(id, assertionForm(forged)), 401, "invalid_client", 700027), /signature/);
      assertAadError(await postV2(id, assertionForm(await assertion({ tenantSegment: id, thumbprint: "none" }))), 401, "invalid_client", 700027);
      const hs256 = await new SignJWT({ iss: t.sandbox.clientId, sub: t.sandbox.clientId })
        .setProtectedHeader({ alg: "HS256" })
        .sign(new TextEncoder().encode("a-shared-secret-is-no-certificate"));
      assert.match(assertAadError(await postV2(id, assertionForm(hs256)), 401, "invalid_client", 700027), /Unsupported asymmetric signing algorithm/);
    });

    it("refuses an expired assertion (700024), a wrong audience (700023) and a wrong issuer (700021)", async () => {
      const contoso = tenant("contoso");
      const past = Math.floor(Date.now() / 1000) - 3600;
      const expired = await assertion({ tenantSegment: contoso.id, nbf: past - 600, exp: past });
      assert.match(assertAadError(await postV2(contoso.id, assertionForm(expired)), 401, "invalid_client", 700024), /not within its valid time range/);
      const notYet = await assertion({ tenantSegment: contoso.id, nbf: past + 7200 + 3600, exp: past + 7200 + 4200 });
      assertAadError(await postV2(contoso.id, assertionForm(notYet)), 401, "invalid_client", 700024);
      const otherTenant = await assertion({ tenantSegment: tenant("fabrikam").id });
      assertAadError(await postV2(contoso.id, assertionForm(otherTenant)), 401, "invalid_client", 700023);
      const otherHost = await assertion({ tenantSegment: contoso.id, aud: `https://login.microsoftonline.com/${contoso.id}/oauth2/v2.0/token` });
      assertAadError(await postV2(contoso.id, assertionForm(otherHost)), 401, "invalid_client", 700023);
      const otherIssuer = await assertion({ tenantSegment: contoso.id, iss: randomUUID() });
      assertAadError(await postV2(contoso.id, assertionForm(otherIssuer)), 401, "invalid_client", 700021);
    });

    it("answers a malformed assertion with AADSTS50027 and a half-sent one with 900144", async () => {
      const id = tenant("contoso").id;
      const header = Buffer.from(JSON.stringify({ alg: "PS256" })).toString("base64url");
      for (const junk of ["not-a-jwt", "a.b.c", `${header}.not-json.sig`, "x".repeat(300_000), "a.b.c.d.e"]) {
        assertAadError(await postV2(id, assertionForm(junk)), 400, "invalid_request", 50027);
      }
      const form = assertionForm(await assertion({ tenantSegment: id }));
      delete form.client_assertion_type;
      assert.match(assertAadError(await postV2(id, form), 400, "invalid_request", 900144), /'client_assertion_type'/);
    });
  });

  describe("discovery and key sets", () => {
    it("serves the v2 OpenID configuration with the tenant GUID, on the sandbox host", async () => {
      const contoso = tenant("contoso");
      for (const segment of [contoso.id, contoso.domain, contoso.id.toUpperCase()]) {
        const response = await t.call("GET", `/${segment}/v2.0/.well-known/openid-configuration`);
        assert.equal(response.status, 200);
        assert.equal(response.headers["cache-control"], "max-age=86400, private");
        const doc = response.json;
        assert.equal(doc.issuer, `${t.sandbox.url}/${contoso.id}/v2.0`);
        assert.equal(doc.token_endpoint, `${t.sandbox.url}/${contoso.id}/oauth2/v2.0/token`);
        assert.equal(doc.authorization_endpoint, `${t.sandbox.url}/${contoso.id}/oauth2/v2.0/authorize`);
        assert.equal(doc.jwks_uri, `${t.sandbox.url}/${contoso.id}/discovery/v2.0/keys`);
        assert.deepEqual(doc.token_endpoint_auth_methods_supported, ["client_secret_post", "private_key_jwt", "client_secret_basic"]);
        assert.deepEqual(doc.id_token_signing_alg_values_supported, ["RS256"]);
        assert.deepEqual(doc.scopes_supported, ["openid", "profile", "email", "offline_access"]);
        assert.equal(doc.request_uri_parameter_supported, false);
        assert.equal(doc.tenant_region_scope, "EU");
        assert.equal(doc.cloud_instance_name, "microsoftonline.com");
        assert.equal(doc.msgraph_host, "graph.microsoft.com");
        for (const key of ["device_authorization_endpoint", "end_session_endpoint", "kerberos_endpoint", "userinfo_endpoint", "claims_supported", "rbac_url"]) {
          assert.ok(key in doc, key);
        }
      }
    });

    it("serves the v1 configuration with the sts.windows.net issuer and the common key set", async () => {
      const fabrikam = tenant("fabrikam");
      const doc = (await t.call("GET", `/${fabrikam.domain}/.well-known/openid-configuration`)).json;
      assert.equal(doc.issuer, `https://sts.windows.net/${fabrikam.id}/`);
      assert.equal(doc.token_endpoint, `${t.sandbox.url}/${fabrikam.id}/oauth2/token`);
      assert.equal(doc.authorization_endpoint, `${t.sandbox.url}/${fabrikam.id}/oauth2/authorize`);
      assert.equal(doc.jwks_uri, `${t.sandbox.url}/common/discovery/keys`);
      assert.equal(doc.microsoft_multi_refresh_token, true);
      assert.deepEqual(doc.scopes_supported, ["openid"]);
      assert.equal(doc.check_session_iframe, `${t.sandbox.url}/${fabrikam.id}/oauth2/checksession`);
      assert.equal(doc.userinfo_endpoint, `${t.sandbox.url}/${fabrikam.id}/openid/userinfo`);
    });

    it("keeps the {tenantid} placeholder for common and organizations", async () => {
      for (const alias of ["common", "organizations"]) {
        const v2 = (await t.call("GET", `/${alias}/v2.0/.well-known/openid-configuration`)).json;
        assert.equal(v2.issuer, `${t.sandbox.url}/{tenantid}/v2.0`);
        assert.equal(v2.token_endpoint, `${t.sandbox.url}/${alias}/oauth2/v2.0/token`);
        assert.equal(v2.tenant_region_scope, null);
        const v1 = (await t.call("GET", `/${alias}/.well-known/openid-configuration`)).json;
        assert.equal(v1.issuer, "https://sts.windows.net/{tenantid}/");
      }
    });

    it("answers discovery for an unknown tenant with the captured invalid_tenant body", async () => {
      const response = await t.call("GET", "/tenant/v2.0/.well-known/openid-configuration");
      const description = assertAadError(response, 400, "invalid_tenant", 90002);
      assert.match(
        description,
        /^AADSTS90002: Tenant 'tenant' not found\. Check to make sure you have the correct tenant ID and are signing into the correct cloud\. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant\.\r\n/,
      );
      assertAadError(await t.call("GET", "/tenant/.well-known/openid-configuration"), 400, "invalid_tenant", 90002);
      assertAadError(await t.call("GET", "/tenant/discovery/v2.0/keys"), 400, "invalid_tenant", 90002);
    });

    it("answers instance discovery for the sandbox host only", async () => {
      const contoso = tenant("contoso");
      const authorize = encodeURIComponent(`${t.sandbox.url}/${contoso.id}/oauth2/v2.0/authorize`);
      const response = await t.call("GET", `/common/discovery/instance?api-version=1.1&authorization_endpoint=${authorize}`);
      assert.equal(response.status, 200);
      assert.equal(response.json.tenant_discovery_endpoint, `${t.sandbox.url}/${contoso.id}/v2.0/.well-known/openid-configuration`);
      assert.equal(response.json["api-version"], "1.1");
      const host = `localhost:${t.sandbox.port}`;
      assert.equal(response.json.metadata[0].preferred_network, host);
      assert.equal(response.json.metadata[0].preferred_cache, host);
      assert.ok(response.json.metadata[0].aliases.includes(host));
      const foreign = encodeURIComponent(`https://login.microsoftonline.com/${contoso.id}/oauth2/v2.0/authorize`);
      assertAadError(
        await t.call("GET", `/common/discovery/instance?api-version=1.1&authorization_endpoint=${foreign}`),
        400,
        "invalid_instance",
        50049,
      );
    });

    it("publishes key sets that verify the issued tokens", async () => {
      const contoso = tenant("contoso");
      const token = (await postV1(contoso.id, v1Form())).json.access_token as string;
      const header = decodeProtectedHeader(token);
      const v1Keys = await t.call("GET", "/common/discovery/keys");
      assert.equal(v1Keys.status, 200);
      assert.equal(v1Keys.headers["cache-control"], "max-age=86400, private");
      const key = v1Keys.json.keys[0];
      assert.equal(key.kty, "RSA");
      assert.equal(key.use, "sig");
      assert.equal(key.kid, header.kid);
      assert.equal(key.x5t, key.kid);
      assert.equal(key.e, "AQAB");
      assert.equal(key.x5c.length, 1);
      assert.equal("issuer" in key, false, "v1 key sets carry no issuer");
      const { payload } = await jwtVerify(token, createLocalJWKSet(v1Keys.json), {
        issuer: `https://sts.windows.net/${contoso.id}/`,
        audience: DEFENDER,
      });
      assert.equal(payload.tid, contoso.id);
      for (const path of [`/${contoso.id}/discovery/keys`, `/${contoso.domain}/discovery/v2.0/keys`, "/common/discovery/v2.0/keys", "/organizations/discovery/v2.0/keys"]) {
        const keys = await t.call("GET", path);
        assert.equal(keys.status, 200, path);
        const verified: JWTPayload = (await jwtVerify(token, createLocalJWKSet(keys.json))).payload;
        assert.equal(verified.tid, contoso.id);
      }
      const tenantKeys = (await t.call("GET", `/${contoso.id}/discovery/v2.0/keys`)).json;
      assert.equal(tenantKeys.keys[0].issuer, `${t.sandbox.url}/${contoso.id}/v2.0`);
      const commonKeys = (await t.call("GET", "/common/discovery/v2.0/keys")).json;
      assert.equal(commonKeys.keys[0].issuer, `${t.sandbox.url}/{tenantid}/v2.0`);
    });

    it("counts discovery and key-set calls per tenant", async () => {
      const fabrikam = tenant("fabrikam");
      const before = t.sandbox.context.counterSnapshot().byTenant[fabrikam.id] ?? {};
      await t.call("GET", `/${fabrikam.id}/v2.0/.well-known/openid-configuration`);
      await t.call("GET", `/${fabrikam.domain}/.well-known/openid-configuration`);
      await t.call("GET", `/${fabrikam.id}/discovery/v2.0/keys`);
      const after = t.sandbox.context.counterSnapshot().byTenant[fabrikam.id] ?? {};
      assert.equal((after.discovery ?? 0) - (before.discovery ?? 0), 2);
      assert.equal((after.jwks ?? 0) - (before.jwks ?? 0), 1);
    });
  });

  describe("faults and bad input", () => {
    it("answers throttle and server-error faults with Entra bodies", async () => {
      const ctx = t.sandbox.context;
      const contoso = tenant("contoso");
      ctx.setFault(contoso.id, { kind: "throttle", endpoints: ["token"], times: 1, retryAfterSeconds: 7 });
      const throttled = await postV2(contoso.id, v2Form());
      assertAadError(throttled, 429, "temporarily_unavailable", 90055);
      assert.equal(throttled.headers["retry-after"], "7");
      assert.equal(throttled.headers["cache-control"], "no-store, no-cache");

      ctx.setFault(contoso.id, { kind: "server-error", endpoints: ["token"], times: 1, status: 503 });
      assertAadError(await postV2(contoso.id, v2Form()), 503, "temporarily_unavailable", 90006);
      ctx.setFault(contoso.id, { kind: "server-error", endpoints: ["discovery"], times: 1, status: 500 });
      assertAadError(await t.call("GET", `/${contoso.id}/v2.0/.well-known/openid-configuration`), 500, "server_error", 50000);
      assert.equal((await postV2(contoso.id, v2Form())).status, 200, "faults with `times` clear themselves");
    });

    it("never crashes on garbage: wrong content types, junk, huge fields, oversized bodies", async () => {
      const path = `/${tenant("contoso").id}/oauth2/v2.0/token`;
      const grantTypeMissing = (r: RawResponse) => assertAadError(r, 400, "invalid_request", 900144);
      grantTypeMissing(await t.call("POST", path, { json: v2Form() }));
      grantTypeMissing(await t.call("POST", path, { body: "{not json", headers: { "content-type": "application/json" } }));
      grantTypeMissing(await t.call("POST", path, { body: new URLSearchParams(v2Form()).toString(), headers: { "content-type": "text/plain" } }));
      grantTypeMissing(await t.call("POST", path, { body: "\u0000\u0001binary\uffff", headers: { "content-type": "application/octet-stream" } }));
      grantTypeMissing(await t.call("POST", path, { body: "%%%&&&===&%E0%A4%A", headers: { "content-type": "application/x-www-form-urlencoded" } }));
      grantTypeMissing(await t.call("POST", path));
      // Repeated fields: the last one counts, as with any form parser.
      const repeated = await t.call("POST", path, {
        body: `${new URLSearchParams(v2Form()).toString()}&grant_type=password`,
        headers: { "content-type": "application/x-www-form-urlencoded" },
      });
      assertAadError(repeated, 400, "unsupported_grant_type", 70003);
      // A 900 kB secret is just a wrong secret; the message does not echo huge values.
      const huge = await postV2(tenant("contoso").id, v2Form({ client_secret: "s".repeat(900_000) }));
      assertAadError(huge, 401, "invalid_client", 7000215);
      const hugeClient = await postV2(tenant("contoso").id, v2Form({ client_id: "c".repeat(500_000) }));
      assert.ok(hugeClient.text.length < 4_000);
      assertAadError(hugeClient, 400, "unauthorized_client", 700016);
      // Past the body limit: an Entra body, not a dropped connection.
      const oversized = await t.call("POST", path, { body: `client_secret=${"x".repeat(1_100_000)}`, headers: { "content-type": "application/x-www-form-urlencoded" } });
      assertAadError(oversized, 413, "invalid_request", 90004);
      const badBasic = await t.call("POST", path, { form: { grant_type: "client_credentials", scope: DEFENDER_SCOPE }, headers: { authorization: "Basic %%%" } });
      assertAadError(badBasic, 400, "invalid_request", 90023);
      // Still serving.
      assert.equal((await postV2(tenant("contoso").id, v2Form())).status, 200);
    });
  });
});
