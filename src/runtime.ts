import { join } from "node:path";
import type { Logger } from "pino";
import { createApp, type App, type AppDependencies } from "./app.js";
import { DEFAULT_ROLE_MAP, type Config } from "./config.js";
import { checkSandboxChoice } from "./deployment-mode.js";
import { startSandbox, type Sandbox, type SandboxPersistence } from "./sandbox/sandbox.js";
import { SANDBOX_CALLER_AUDIENCE, SANDBOX_PARTNER_TENANT_ID } from "./sandbox/tokens.js";

export interface Runtime {
  app: App;
  /** The in-process sandbox, in sandbox mode only. */
  sandbox: Sandbox | undefined;
  /** Base URL of the GraphQL server, e.g. `http://127.0.0.1:4000`. */
  url: string;
  close(): Promise<void>;
}

/**
 * In sandbox mode (no Azure app configured) starts the emulator first and points the config at it:
 * authority host, both incident backends, the sandbox's app credential, and trust of its certificate in
 * the server's own dispatcher. Then builds and starts the app. Shared by main and the integration tests.
 */
export async function startRuntime(config: Config, deps: Omit<AppDependencies, "store"> = {}): Promise<Runtime> {
  let sandbox: Sandbox | undefined;
  let effective = config;
  if (config.mode === "sandbox") {
    // Chosen, not fallen into: refused before the emulator starts (the store's own record is checked in createApp).
    checkSandboxChoice(config);
    sandbox = await startSandbox({
      seed: config.sandbox.seed,
      tenantCount: config.sandbox.tenantCount,
      port: config.sandbox.port,
      ...(config.sandbox.incidentsPerTenant !== undefined
        ? { incidentsPerTenant: config.sandbox.incidentsPerTenant }
        : {}),
      ...(config.sandbox.latencyMs > 0 ? { latency: { fixedMs: config.sandbox.latencyMs } } : {}),
      // The emulated partner app requires the hunting roles when hunting is on, so its tenants can hunt.
      huntingRoles: config.hunting.enabled,
    }, sandboxPersistence(config, deps.logger));
    effective = withSandbox(config, sandbox);
  }
  let app: App;
  try {
    app = await createApp(effective, deps);
  } catch (error) {
    await sandbox?.close();
    throw error;
  }
  if (sandbox) {
    await registerSandboxTenants(app, sandbox).catch(async (error: unknown) => {
      await app.close();
      await sandbox?.close();
      throw error;
    });
  }
  const url = await app.listen().catch(async (error: unknown) => {
    await app.close();
    await sandbox?.close();
    throw error;
  });
  // As an operator registers Crosswatch's callback on the app in Entra: the LEGACY_V1 link, which names no
  // redirect URI, then brings the admin back to it (admin_consent=True&tenant=…) instead of the sandbox's own page.
  if (sandbox && !sandbox.context.app.redirectUris.includes(app.consentCallbackUrl())) {
    sandbox.context.app.redirectUris.unshift(app.consentCallbackUrl());
  }
  return {
    app,
    sandbox,
    url,
    async close() {
      await app.close();
      await sandbox?.close();
    },
  };
}

/**
 * First start in sandbox mode: registers the sandbox's tenants with their names and tags, consented ones as
 * GRANTED and the Graph-only one with a Graph backend override. Tenants already registered are left alone,
 * so what a user changed survives a restart. Only into a store recorded as a sandbox store (createApp
 * recorded or checked that already; this is the last guard against seeding a production registry).
 */
async function registerSandboxTenants(app: App, sandbox: Sandbox): Promise<void> {
  const deployment = await app.store.deployment.get();
  if (deployment?.mode !== "sandbox") {
    throw new Error("refusing to register sandbox tenants: the store is not recorded as a sandbox store");
  }
  // Seeded tenants only: one created through POST /_sandbox/tenants is registered by its user (registerTenant).
  const added = new Set(sandbox.context.addedTenants);
  await app.store.tenants.registerMissing(
    sandbox.tenants.filter((t) => !added.has(t)).map((t) => ({
      id: t.id,
      displayName: t.displayName,
      tags: t.tags,
      backend: t.resources.defender ? null : ("graph" as const),
      consentState: t.consent.granted ? ("GRANTED" as const) : ("PENDING" as const),
    })),
  );
}

/**
 * The sandbox keeps what changed beside the registry, in `DATA_DIR/sandbox-state.json`, so a restart finds
 * the consents the registry says were granted, the added tenants and the incident edits. Nothing with
 * `DATA_DIR=memory://` (the registry forgets too). With `DATABASE_URL`, the file still goes to DATA_DIR:
 * give each sandbox database its own DATA_DIR.
 */
function sandboxPersistence(config: Config, logger: Logger | undefined): SandboxPersistence | undefined {
  if (config.store.dataDir === "memory://") return undefined;
  return {
    stateFile: join(config.store.dataDir, "sandbox-state.json"),
    onWriteError: (error) => logger?.warn({ err: error }, "could not write the sandbox state file; the next change tries again"),
  };
}

/** The config an app needs to run against a sandbox. */
export function withSandbox(config: Config, sandbox: Sandbox): Config {
  return {
    ...config,
    credential: { kind: "secret", clientId: sandbox.clientId, clientSecret: sandbox.clientSecret },
    upstream: {
      ...config.upstream,
      authorityHost: sandbox.url,
      defenderApiBase: sandbox.url,
      graphApiBase: `${sandbox.url}/v1.0`,
      trustedCaPem: [...config.upstream.trustedCaPem, sandbox.caCertPem],
    },
    // The sandbox's own analysts (POST /_sandbox/caller-tokens) may call, unless Entra callers are configured.
    auth: {
      ...config.auth,
      entra: config.auth.entra ?? {
        audiences: [SANDBOX_CALLER_AUDIENCE],
        tenants: [SANDBOX_PARTNER_TENANT_ID],
        roleMap: DEFAULT_ROLE_MAP,
        clockToleranceSeconds: 30,
      },
    },
  };
}
