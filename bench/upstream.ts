import { createSecureContext, rootCertificates, type SecureContext } from "node:tls";
import { Agent, request, type Dispatcher } from "undici";
import { createDispatcher } from "../src/http/dispatcher.js";
import type { SandboxInfo } from "./sandbox-process.js";

/**
 * The two baselines Crosswatch is compared with, written as plainly as a partner would: bare undici,
 * no MSAL, no cache, no retries.
 *
 * - the bound: one parallel round, each tenant a token POST then one list GET, all tenants at once —
 *   what no client can beat without skipping calls;
 * - the script: the partner-access page's loop, token then list, one tenant after the other.
 */

type Tenant = SandboxInfo["tenants"][number];

const SCOPES = { defender: "https://api.security.microsoft.com/.default", graph: "https://graph.microsoft.com/.default" };

/** One tenant's app-only token from the sandbox's Entra ID (client credentials for its backend), over bare undici. */
export async function sandboxToken(sandbox: SandboxInfo, tenant: Tenant, dispatcher: Dispatcher): Promise<string> {
  const token = await request(`${sandbox.url}/${tenant.id}/oauth2/v2.0/token`, {
    dispatcher,
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      client_id: sandbox.clientId,
      client_secret: sandbox.clientSecret,
      scope: tenant.defender ? SCOPES.defender : SCOPES.graph,
    }).toString(),
  });
  const tokenBody = (await token.body.json()) as { access_token?: string };
  if (token.statusCode !== 200 || !tokenBody.access_token) throw new Error(`token for ${tenant.id}: HTTP ${token.statusCode}`);
  return tokenBody.access_token;
}

/** One tenant's token then first page of incidents; resolves the number of incidents read. */
async function tokenThenList(sandbox: SandboxInfo, tenant: Tenant, dispatcher: Dispatcher): Promise<number> {
  const accessToken = await sandboxToken(sandbox, tenant, dispatcher);
  // Each backend's largest page as Crosswatch asks for it: Defender 100 (alerts inline), Graph 50 without
  // $expand=alerts (it fails on large tenants; alerts are read per incident only when a query selects them).
  const listUrl = tenant.defender ? `${sandbox.url}/api/incidents?$top=100` : `${sandbox.url}/v1.0/security/incidents?$top=50`;
  const list = await request(listUrl, { dispatcher, headers: { authorization: `Bearer ${accessToken}` } });
  const page = (await list.body.json()) as { value?: unknown[] };
  if (list.statusCode !== 200 || !Array.isArray(page.value)) throw new Error(`list for ${tenant.id}: HTTP ${list.statusCode}`);
  return page.value.length;
}

export interface RoundResult {
  ms: number;
  incidents: number;
  /** When each tenant's calls were done, ms from the round's start, ascending. */
  tenantDoneMs: number[];
}

/**
 * Which connections a round uses:
 * - `ideal`: one per tenant (nothing queues) and one TLS context built once for all of them;
 * - `crosswatch`: Crosswatch's own dispatcher (`createDispatcher`, 64 connections per origin), which
 *   passes the trusted CAs to every TLS connect, so Node builds a new context — about 25 ms of CPU
 *   parsing the ~145 root certificates — per new connection.
 */
export type Transport = "ideal" | "crosswatch";

/**
 * The bound: every tenant's token + list at once over a fresh dispatcher (new TLS connections, as a
 * cold Crosswatch has).
 */
export async function boundRound(sandbox: SandboxInfo, tenants: Tenant[], transport: Transport = "ideal"): Promise<RoundResult> {
  // A generous connect timeout: with 1,000 connections at once, handshakes queue behind the sandbox's
  // busy event loop for seconds, and the bound is what the setup can do, not a failure.
  const dispatcher =
    transport === "ideal"
      ? new Agent({ connections: tenants.length, keepAliveTimeout: 30_000, connect: { timeout: 120_000, secureContext: secureContextOf(sandbox) } })
      : createDispatcher({ trustedCaPem: [sandbox.caCertPem], connectTimeoutMs: 120_000, connectionsPerOrigin: 64 });
  try {
    const t0 = performance.now();
    const done: number[] = [];
    const counts = await Promise.all(
      tenants.map(async (t) => {
        const count = await tokenThenList(sandbox, t, dispatcher);
        done.push(performance.now() - t0);
        return count;
      }),
    );
    return { ms: performance.now() - t0, incidents: counts.reduce((a, b) => a + b, 0), tenantDoneMs: done };
  } finally {
    await dispatcher.close();
  }
}

/** The script: tenant after tenant, token then list, over one keep-alive connection (kind to the script). */
export async function scriptLoop(sandbox: SandboxInfo, tenants: Tenant[]): Promise<RoundResult> {
  const dispatcher = new Agent({ connections: 1, keepAliveTimeout: 30_000, connect: { timeout: 10_000, secureContext: secureContextOf(sandbox) } });
  try {
    const t0 = performance.now();
    let incidents = 0;
    const done: number[] = [];
    for (const tenant of tenants) {
      incidents += await tokenThenList(sandbox, tenant, dispatcher);
      done.push(performance.now() - t0);
    }
    return { ms: performance.now() - t0, incidents, tenantDoneMs: done };
  } finally {
    await dispatcher.close();
  }
}

const contexts = new Map<string, SecureContext>();

/** The same trust as Crosswatch's dispatcher (system roots + the sandbox's certificate), built once. */
export function secureContextOf(sandbox: SandboxInfo): SecureContext {
  let context = contexts.get(sandbox.caCertPem);
  if (!context) {
    context = createSecureContext({ ca: [...rootCertificates, sandbox.caCertPem] });
    contexts.set(sandbox.caCertPem, context);
  }
  return context;
}
