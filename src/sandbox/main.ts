import { chmod, mkdir, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { z } from "zod";
import { startSandbox } from "./sandbox.js";

/**
 * `npm run sandbox`: the emulated Entra ID and Defender API on its own, for trying clients by hand.
 * The certificate and the app's credentials go to files (the secret never to the terminal or a log).
 */
const env = z
  .object({
    SANDBOX_PORT: z.coerce.number().int().min(0).max(65_535).default(4443),
    SANDBOX_SEED: z.coerce.number().int().min(0).default(42),
    SANDBOX_TENANTS: z.coerce.number().int().min(1).max(1000).default(13),
    SANDBOX_INCIDENTS: z.coerce.number().int().min(0).max(1000).optional(),
    SANDBOX_LATENCY_MS: z.coerce.number().int().min(0).max(60_000).default(0),
    SANDBOX_ACTIVITY_MS: z.coerce.number().int().min(0).default(0),
    SANDBOX_DIR: z.string().default("data/sandbox"),
  })
  .parse(Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== "")));

const sandbox = await startSandbox({
  port: env.SANDBOX_PORT,
  seed: env.SANDBOX_SEED,
  tenantCount: env.SANDBOX_TENANTS,
  ...(env.SANDBOX_INCIDENTS !== undefined ? { incidentsPerTenant: env.SANDBOX_INCIDENTS } : {}),
  ...(env.SANDBOX_LATENCY_MS > 0 ? { latency: { fixedMs: env.SANDBOX_LATENCY_MS } } : {}),
  ...(env.SANDBOX_ACTIVITY_MS > 0 ? { activity: { intervalMs: env.SANDBOX_ACTIVITY_MS } } : {}),
  // The standalone sandbox demonstrates hunting: the app requires (and consents grant) the hunting roles.
  huntingRoles: true,
});

const dir = resolve(env.SANDBOX_DIR);
await mkdir(dir, { recursive: true });
const caPath = resolve(dir, "ca.pem");
const credentialsPath = resolve(dir, "credentials.json");
await writeFile(caPath, sandbox.caCertPem);
await writeFile(
  credentialsPath,
  JSON.stringify({ clientId: sandbox.clientId, clientSecret: sandbox.clientSecret, authorityHost: sandbox.url }, null, 2),
  { mode: 0o600 },
);
await chmod(credentialsPath, 0o600);

const lines = [
  `Crosswatch sandbox: emulated Entra ID, Defender API and Graph security incidents at ${sandbox.url}`,
  `  certificate (trust it in your client): ${caPath}`,
  `  partner app client id ${sandbox.clientId}; its secret is in ${credentialsPath}`,
  `  control API: ${sandbox.url}/_sandbox (counters, latency, faults, consent, activity, clock)`,
  `  tenants:`,
  ...sandbox.tenants
    .slice(0, 20)
    .map((t) => `    ${t.id}  ${t.displayName.padEnd(24)} ${t.note ?? ""}`.trimEnd()),
  ...(sandbox.tenants.length > 20 ? [`    … and ${sandbox.tenants.length - 20} more (GET /_sandbox/tenants)`] : []),
  `  try: curl --cacert ${caPath} ${sandbox.url}/${sandbox.tenants[0]!.id}/v2.0/.well-known/openid-configuration`,
];
process.stdout.write(`${lines.join("\n")}\n`);

const stop = () => {
  void sandbox.close().then(() => process.exit(0));
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
