import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { decodeJwt } from "jose";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { startTestSandbox, type RawResponse, type TestSandbox } from "../helpers/sandbox.js";

const DEFENDER_SCOPE = "https://api.security.microsoft.com/.default";
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HOSTILE_STATE = `"><script>alert(1)</script>&x='y'`;

function unescapeHtml(value: string): string {
  return value
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

/** What a browser would submit from the consent page: its form action, hidden fields and selected tenant. */
function formOf(html: string): { action: string; fields: Record<string, string> } {
  const action = /<form method="post" action="([^"]*)">/.exec(html);
  assert.ok(action, "the page has a POST form");
  const fields: Record<string, string> = {};
  for (const match of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
    fields[unescapeHtml(match[1]!)] = unescapeHtml(match[2]!);
  }
  const selected = /<option value="([^"]*)" selected>/.exec(html);
  if (selected) fields.tenant = unescapeHtml(selected[1]!);
  return { action: unescapeHtml(action[1]!), fields };
}

/** The redirect's target (origin and path) and its parameters, in order. */
function redirectOf(response: RawResponse): { target: string; params: [string, string][] } {
  assert.equal(response.status, 302, response.text);
  const location = new URL(String(response.headers.location));
  return { target: `${location.origin}${location.pathname}`, params: [...location.searchParams.entries()] };
}

describe("sandbox Entra ID: admin consent", () => {
  let t: TestSandbox;
  const redirectUri = () => `http://localhost:${t.sandbox.port + 1}/onboarding/callback`;

  const tenant = (name: string): SandboxTenant => {
    const found = t.sandbox.tenants.find((x) => x.domain === `${name}.onmicrosoft.com`);
    assert.ok(found, name);
    return found;
  };
  const consentCount = (key: string): number => t.sandbox.context.counterSnapshot().byTenant[key]?.consent ?? 0;
  const revoke = async (target: SandboxTenant) => {
    const response = await t.call("POST", `/_sandbox/tenants/${target.id}/revoke-consent`);
    assert.equal(response.status, 200);
  };
  const token = (target: SandboxTenant, scope = DEFENDER_SCOPE) =>
    t.call("POST", `/${target.id}/oauth2/v2.0/token`, {
      form: { grant_type: "client_credentials", client_id: t.sandbox.clientId, client_secret: t.sandbox.clientSecret, scope },
    });
  const query = (params: Record<string, string>) => new URLSearchParams(params).toString();
  const v1Link = (segment: string, extra: Record<string, string> = {}) =>
    `/${segment}/oauth2/authorize?${query({ prompt: "consent", client_id: t.sandbox.clientId, response_type: "code", sso_reload: "true", ...extra })}`;
  const v2Link = (segment: string, extra: Record<string, string> = {}) =>
    `/${segment}/v2.0/adminconsent?${query({ client_id: t.sandbox.clientId, scope: DEFENDER_SCOPE, ...extra })}`;
  const adminConsentLink = (segment: string, extra: Record<string, string> = {}) =>
    `/${segment}/adminconsent?${query({ client_id: t.sandbox.clientId, ...extra })}`;

  /** Opens a link, checks it is a consent page, and submits its form with a decision (and maybe another tenant). */
  const decide = async (link: string, decision: "accept" | "decline", tenantId?: string): Promise<RawResponse> => {
    const page = await t.call("GET", link);
    assert.equal(page.status, 200, page.text);
    const { action, fields } = formOf(page.text);
    if (tenantId) fields.tenant = tenantId;
    return t.call("POST", action, { form: { ...fields, decision } });
  };
  const assertErrorPage = (response: RawResponse, code: number): void => {
    assert.equal(response.status, 400, response.text);
    assert.match(String(response.headers["content-type"]), /^text\/html/);
    assert.match(response.text, new RegExp(`AADSTS${code}:`));
    assert.doesNotMatch(response.text, /<form/);
  };

  before(async () => {
    t = await startTestSandbox();
  });
  after(async () => {
    await t.close();
  });

  it("renders the partner-access v1 link as a clean consent page with a tenant picker", async () => {
    const before = consentCount("common");
    const response = await t.call("GET", v1Link("common", { redirect_uri: redirectUri(), state: "s1" }));
    assert.equal(response.status, 200);
    assert.match(String(response.headers["content-type"]), /^text\/html; charset=utf-8/);
    assert.match(String(response.headers["content-security-policy"]), /default-src 'none'/);
    assert.equal(response.headers["cache-control"], "no-store, no-cache");
    const html = response.text;
    assert.ok(html.includes(t.sandbox.context.app.displayName));
    assert.ok(html.includes(t.sandbox.clientId));
    assert.ok(html.includes("Read and write all incidents"));
    assert.ok(html.includes("Microsoft Threat Protection"));
    assert.ok(html.includes("Read and write to all security incidents"));
    assert.match(html, /<button type="submit" name="decision" value="accept"/);
    assert.match(html, /<button type="submit" name="decision" value="decline"/);
    // Inline CSS only: no script, no external stylesheet, image or font.
    assert.doesNotMatch(html, /<script|<link|<img|src=|url\(/i);
    assert.equal([...html.matchAll(/<option value="/g)].length, t.sandbox.tenants.length);
    const { action, fields } = formOf(html);
    assert.equal(action, "/common/Consent/Set");
    assert.equal(fields.flow, "v1");
    assert.equal(fields.client_id, t.sandbox.clientId);
    assert.equal(fields.redirect_uri, redirectUri());
    assert.equal(fields.state, "s1");
    assert.equal(fields.tenant, tenant("alpineskihouse").id, "the tenant still to onboard is preselected");
    assert.equal(consentCount("common"), before + 1);
  });

  it("accepts on the v1 link: redirect with code, tenant, session_state and state; the tenant then issues tokens", async () => {
    const alpine = tenant("alpineskihouse");
    assert.deepEqual((await token(alpine)).json.error_codes, [700016]);
    const before = consentCount(alpine.id);

    const response = await decide(v1Link("common", { redirect_uri: redirectUri(), state: "onboard-42" }), "accept", alpine.id);
    const { target, params } = redirectOf(response);
    assert.equal(target, redirectUri());
    const byName = Object.fromEntries(params);
    assert.deepEqual(params.map(([k]) => k), ["code", "admin_consent", "tenant", "session_state", "state"]);
    assert.ok(byName.code!.length > 20);
    assert.equal(byName.admin_consent, "True");
    assert.equal(byName.tenant, alpine.id);
    assert.match(byName.session_state!, GUID);
    assert.equal(byName.state, "onboard-42");
    assert.equal(consentCount(alpine.id), before + 1, "the decision is counted on the chosen tenant");

    assert.equal(alpine.consent.granted, true);
    assert.ok(Math.abs(alpine.consent.grantedAt! - Date.now()) < 60_000);
    const issued = await token(alpine);
    assert.equal(issued.status, 200, issued.text);
    const claims = decodeJwt(issued.json.access_token);
    assert.equal(claims.tid, alpine.id);
    assert.deepEqual(claims.roles, ["Incident.ReadWrite.All"]);
  });

  it("declines on the v1 link: access_denied with AADSTS65004, and the tenant still answers 700016", async () => {
    const litware = tenant("litwareinc");
    await revoke(litware);
    const page = await t.call("GET", v1Link(litware.id, { redirect_uri: redirectUri(), state: "d1" }));
    assert.doesNotMatch(page.text, /<select/, "a link naming the tenant fixes it");
    assert.ok(page.text.includes("Litware, Inc."));
    const response = await decide(v1Link(litware.id, { redirect_uri: redirectUri(), state: "d1" }), "decline");
    const { target, params } = redirectOf(response);
    assert.equal(target, redirectUri());
    const byName = Object.fromEntries(params);
    assert.deepEqual(params.map(([k]) => k), ["error", "error_description", "state"]);
    assert.equal(byName.error, "access_denied");
    assert.ok(byName.error_description!.startsWith("AADSTS65004: User declined to consent to access the app."));
    assert.match(byName.error_description!, /\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\nTimestamp: /);
    assert.equal(byName.state, "d1");
    assert.equal(litware.consent.granted, false);
    assert.deepEqual((await token(litware)).json.error_codes, [700016]);
  });

  it("accepts and declines on the v2 adminconsent endpoint (tenant by domain)", async () => {
    const trey = tenant("treyresearch");
    await revoke(trey);
    const declined = redirectOf(await decide(v2Link(trey.domain, { redirect_uri: redirectUri(), state: "v2-no" }), "decline"));
    const declinedParams = Object.fromEntries(declined.params);
    assert.deepEqual(declined.params.map(([k]) => k), ["admin_consent", "error", "error_description", "state"]);
    assert.equal(declinedParams.admin_consent, "True");
    assert.equal(declinedParams.error, "consent_required");
    assert.ok(declinedParams.error_description!.startsWith("AADSTS65004: The resource owner or authorization server denied the request.\r\nTrace ID: "));
    assert.equal(declinedParams.state, "v2-no");
    assert.deepEqual((await token(trey)).json.error_codes, [700016]);

    const accepted = redirectOf(await decide(v2Link(trey.domain, { redirect_uri: redirectUri(), state: "v2-yes" }), "accept"));
    assert.deepEqual(accepted.params, [
      ["admin_consent", "True"],
      ["tenant", trey.id],
      ["scope", DEFENDER_SCOPE],
      ["state", "v2-yes"],
    ]);
    assert.equal((await token(trey)).status, 200);
  });

  it("offers the tenant picker for organizations and refuses common on the v2 endpoint", async () => {
    const page = await t.call("GET", v2Link("organizations", { redirect_uri: redirectUri() }));
    assert.equal(page.status, 200);
    assert.match(page.text, /<select id="tenant" name="tenant"/);
    assert.equal(formOf(page.text).action, "/organizations/Consent/Set");
    assertErrorPage(await t.call("GET", v2Link("common", { redirect_uri: redirectUri() })), 90023);
    // A scope on a resource the app does not require, and a missing scope.
    assertErrorPage(await t.call("GET", v2Link("organizations", { scope: "https://outlook.office.com/.default" })), 650057);
    assertErrorPage(await t.call("GET", `/organizations/v2.0/adminconsent?client_id=${t.sandbox.clientId}`), 900144);
  });

  it("accepts and declines on the tenant-wide /adminconsent endpoint", async () => {
    const tailspin = tenant("tailspintoys");
    await revoke(tailspin);
    const declined = redirectOf(await decide(adminConsentLink("common", { redirect_uri: redirectUri(), state: "a-no" }), "decline", tailspin.id));
    assert.deepEqual(declined.params, [
      ["error", "permission_denied"],
      ["error_description", "The admin canceled the request"],
      ["state", "a-no"],
    ]);
    assert.equal(tailspin.consent.granted, false);
    const accepted = redirectOf(await decide(adminConsentLink("common", { redirect_uri: redirectUri(), state: "a-yes" }), "accept", tailspin.id));
    assert.deepEqual(accepted.params, [
      ["tenant", tailspin.id],
      ["state", "a-yes"],
      ["admin_consent", "True"],
    ]);
    assert.equal((await token(tailspin)).status, 200);
  });

  it("re-consent grants the required roles on every resource the tenant has", async () => {
    const coho = tenant("cohowinery");
    assert.deepEqual(decodeJwt((await token(coho)).json.access_token).roles, ["AdvancedHunting.Read.All"]);
    redirectOf(await decide(adminConsentLink(coho.id, { redirect_uri: redirectUri() }), "accept"));
    assert.deepEqual(decodeJwt((await token(coho)).json.access_token).roles, ["Incident.ReadWrite.All"]);

    // A Graph-only tenant consents through a link naming Graph alone; one covering every required resource
    // (tenant-wide /adminconsent, v1) is refused whole with AADSTS650052 (consent-fidelity.test.ts).
    const proseware = tenant("proseware");
    redirectOf(await decide(v2Link(proseware.id, { redirect_uri: redirectUri(), scope: "https://graph.microsoft.com/.default" }), "accept"));
    assert.deepEqual(proseware.consent.roles, { defender: [], graph: ["SecurityIncident.ReadWrite.All"] });
    assert.deepEqual((await token(proseware)).json.error_codes, [500011], "still no Defender principal there");
    assert.equal((await token(proseware, "https://graph.microsoft.com/.default")).status, 200);
  });

  it("refuses redirect URIs that are not registered with AADSTS50011, on the page and on the decision", async () => {
    const woodgrove = tenant("woodgrovebank");
    for (const bad of ["https://evil.example/callback", "javascript:alert(1)", "http://localhost@evil.example/cb", "ftp://localhost/cb", "not a url"]) {
      const response = await t.call("GET", v1Link("common", { redirect_uri: bad }));
      assertErrorPage(response, 50011);
      assert.ok(response.text.includes(t.sandbox.clientId));
    }
    // A forged decision cannot send the code elsewhere either, and grants nothing.
    await revoke(woodgrove);
    const forged = await t.call("POST", `/${woodgrove.id}/Consent/Set`, {
      form: { flow: "v1", client_id: t.sandbox.clientId, response_type: "code", redirect_uri: "https://evil.example/cb", decision: "accept" },
    });
    assertErrorPage(forged, 50011);
    assert.equal(woodgrove.consent.granted, false);

    // Without loopback redirects only exact registered URIs pass.
    const app = t.sandbox.context.app;
    app.allowLoopbackRedirects = false;
    app.redirectUris.push("https://partner.example/onboarded");
    try {
      assertErrorPage(await t.call("GET", v1Link("common", { redirect_uri: redirectUri() })), 50011);
      assertErrorPage(await t.call("GET", v1Link("common", { redirect_uri: "https://partner.example/onboarded/" })), 50011);
      const ok = await decide(v1Link(woodgrove.id, { redirect_uri: "https://partner.example/onboarded" }), "accept");
      assert.equal(redirectOf(ok).target, "https://partner.example/onboarded");
      // A link without redirect_uri returns to the registered one.
      await revoke(woodgrove);
      const implicit = await decide(v1Link(woodgrove.id), "accept");
      assert.equal(redirectOf(implicit).target, "https://partner.example/onboarded");
      assert.equal(woodgrove.consent.granted, true);
    } finally {
      app.allowLoopbackRedirects = true;
      app.redirectUris.length = 0;
    }
  });

  it("shows error pages for an unknown client, an unknown tenant and missing parameters", async () => {
    const stranger = randomUUID();
    const unknownClient = await t.call("GET", `/common/oauth2/authorize?client_id=${stranger}&response_type=code`);
    assertErrorPage(unknownClient, 700016);
    assert.ok(unknownClient.text.includes(stranger));
    assertErrorPage(await t.call("GET", v1Link("nosuchtenant.onmicrosoft.com")), 90002);
    assertErrorPage(await t.call("GET", `/common/oauth2/authorize?response_type=code`), 900144);
    assertErrorPage(await t.call("GET", `/common/oauth2/authorize?client_id=${t.sandbox.clientId}`), 900144);
    // Decisions that do not say which tenant, flow or decision.
    const base = { flow: "v1", client_id: t.sandbox.clientId, response_type: "code", decision: "accept" };
    assertErrorPage(await t.call("POST", "/common/Consent/Set", { form: base }), 90002);
    assertErrorPage(await t.call("POST", "/common/Consent/Set", { form: { ...base, tenant: randomUUID() } }), 90002);
    assertErrorPage(await t.call("POST", "/common/Consent/Set", { form: { ...base, flow: "v9", tenant: tenant("contoso").id } }), 900144);
    assertErrorPage(await t.call("POST", "/common/Consent/Set", { form: { ...base, decision: "maybe", tenant: tenant("contoso").id } }), 900144);
    assertErrorPage(await t.call("POST", "/common/Consent/Set", { json: { ...base, tenant: tenant("contoso").id } }), 900144);
    assertErrorPage(await t.call("POST", "/common/Consent/Set", { body: "%%%\u0000", headers: { "content-type": "application/x-www-form-urlencoded" } }), 900144);
  });

  it("escapes a hostile state on the page and carries it intact to the redirect", async () => {
    const lamna = tenant("lamnahealthcare");
    const link = v1Link(lamna.id, { redirect_uri: redirectUri(), state: HOSTILE_STATE });
    const page = await t.call("GET", link);
    assert.equal(page.status, 200);
    assert.doesNotMatch(page.text, /<script/i);
    assert.ok(page.text.includes("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;x=&#39;y&#39;"));
    const { params } = redirectOf(await decide(link, "accept"));
    assert.equal(Object.fromEntries(params).state, HOSTILE_STATE);

    // Echoed values on error pages are escaped too.
    const evil = `https://evil.example/"><script>alert(2)</script>`;
    const error = await t.call("GET", v1Link("common", { redirect_uri: evil }));
    assertErrorPage(error, 50011);
    assert.doesNotMatch(error.text, /<script/i);
    const hostileClient = await t.call("GET", `/common/oauth2/authorize?response_type=code&client_id=${encodeURIComponent("<img src=x onerror=alert(3)>")}`);
    assertErrorPage(hostileClient, 700016);
    assert.doesNotMatch(hostileClient.text, /<img/i);
  });

  it("shows a consent-recorded page when there is nowhere to redirect", async () => {
    const northwind = tenant("northwindtraders");
    await revoke(northwind);
    const accepted = await decide(adminConsentLink(northwind.id), "accept");
    assert.equal(accepted.status, 200);
    assert.match(String(accepted.headers["content-type"]), /^text\/html/);
    assert.match(accepted.text, /Consent recorded/);
    assert.ok(accepted.text.includes(northwind.id));
    assert.ok(accepted.text.includes("Read and write all incidents"));
    assert.equal((await token(northwind)).status, 200);
    const declined = await decide(v1Link(northwind.id), "decline");
    assert.equal(declined.status, 200);
    assert.match(declined.text, /Consent declined/);
    assert.equal(northwind.consent.granted, true, "declining later does not revoke an earlier grant");
  });

  it("counts views and decisions, and answers faults with an HTML page", async () => {
    const fabrikam = tenant("fabrikam");
    const before = consentCount(fabrikam.id);
    redirectOf(await decide(v1Link(fabrikam.id, { redirect_uri: redirectUri() }), "accept"));
    assert.equal(consentCount(fabrikam.id), before + 2);

    t.sandbox.context.setFault(fabrikam.id, { kind: "throttle", endpoints: ["consent"], times: 1 });
    const throttled = await t.call("GET", v1Link(fabrikam.id));
    assert.equal(throttled.status, 429);
    assert.match(String(throttled.headers["content-type"]), /^text\/html/);
    assert.match(throttled.text, /AADSTS90055/);
    assert.equal((await t.call("GET", v1Link(fabrikam.id))).status, 200);
  });
});
