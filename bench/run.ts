import { ConfidentialClientApplication } from "@azure/msal-node";
import { UndiciNetworkClient } from "../src/auth/network-client.js";
import { createDispatcher } from "../src/http/dispatcher.js";
import { startSandbox } from "../src/sandbox/sandbox.js";

/**
 * Foundation benchmark: what the sandbox costs to start at 13 and 1,000 tenants, and what MSAL's token
 * cache saves per tenant (cold token POST vs cached). Prints medians and ratios; asserts nothing.
 * The full comparison (bound, script, Crosswatch cold/warm) arrives with the benchmark issue.
 */
const RUNS = 5;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function timeStart(tenantCount: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const sandbox = await startSandbox({ tenantCount });
    samples.push(performance.now() - t0);
    await sandbox.close();
  }
  return median(samples);
}

async function tokenCosts(): Promise<{ coldMs: number; cachedMs: number }> {
  const sandbox = await startSandbox({ tenantCount: 50 });
  const dispatcher = createDispatcher({ trustedCaPem: [sandbox.caCertPem], connectTimeoutMs: 5000, connectionsPerOrigin: 16 });
  const cca = new ConfidentialClientApplication({
    auth: {
      clientId: sandbox.clientId,
      clientSecret: sandbox.clientSecret,
      authority: `${sandbox.url}/organizations`,
      knownAuthorities: [`localhost:${sandbox.port}`],
    },
    system: { networkClient: new UndiciNetworkClient(dispatcher) },
  });
  const tenants = sandbox.tenants.filter((t) => t.consent.granted && t.resources.defender);
  const acquire = (tenantId: string) =>
    cca.acquireTokenByClientCredential({
      scopes: ["https://api.security.microsoft.com/.default"],
      authority: `${sandbox.url}/${tenantId}`,
    });
  const cold: number[] = [];
  const cached: number[] = [];
  for (const tenant of tenants) {
    let t0 = performance.now();
    await acquire(tenant.id);
    cold.push(performance.now() - t0);
    t0 = performance.now();
    const again = await acquire(tenant.id);
    cached.push(performance.now() - t0);
    if (!again?.fromCache) throw new Error("second token call was not served from MSAL's cache");
  }
  await sandbox.close();
  await dispatcher.close();
  return { coldMs: median(cold), cachedMs: median(cached) };
}

const start13 = await timeStart(13);
const start1000 = await timeStart(1000);
const tokens = await tokenCosts();
const rows = [
  ["sandbox start, 13 tenants (ms, median)", start13.toFixed(1)],
  ["sandbox start, 1,000 tenants (ms, median)", start1000.toFixed(1)],
  ["ratio start 1,000 / 13", (start1000 / start13).toFixed(2)],
  ["token, cold POST via MSAL (ms, median)", tokens.coldMs.toFixed(2)],
  ["token, MSAL cache hit (ms, median)", tokens.cachedMs.toFixed(3)],
  ["ratio cold / cached", (tokens.coldMs / tokens.cachedMs).toFixed(1)],
];
const width = Math.max(...rows.map(([k]) => k!.length));
for (const [k, v] of rows) process.stdout.write(`${k!.padEnd(width)}  ${v}\n`);
