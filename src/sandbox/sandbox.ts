import { Readable } from "node:stream";
import Fastify, { type FastifyInstance } from "fastify";
import { createLoopbackTlsIdentity } from "./certs.js";
import { SandboxContext, type FaultSpec, type SandboxOptions } from "./context.js";
import { registerControlRoutes } from "./control.js";
import { registerDefenderRoutes } from "./defender-api.js";
import { registerEntraRoutes } from "./entra.js";
import { registerGraphRoutes } from "./graph-api.js";
import { IncidentStore } from "./incidents-store.js";
import type { SandboxServices } from "./services.js";
import { RESOURCES, type ResourceKey } from "./resources.js";
import { readSandboxState, SandboxStateWriter, type SandboxState } from "./state-file.js";
import { grantedRoles, type SandboxTenant } from "./tenants.js";
import { createSigningKey, issueAccessToken } from "./tokens.js";

/** A running sandbox: emulated Entra ID and both incidents backends on one loopback HTTPS port. */
export interface Sandbox {
  /** `https://localhost:PORT`: the authority host, the Defender API base and the Graph base all at once. */
  url: string;
  port: number;
  /** The PEM certificate of the listener. Trust it in one undici dispatcher; never disable TLS checks. */
  caCertPem: string;
  /** The partner app registered in the emulated cloud. */
  clientId: string;
  /** Its current client secret (random per start unless given). Keep out of logs. */
  clientSecret: string;
  tenants: SandboxTenant[];
  context: SandboxContext;
  incidents: IncidentStore;
  /**
   * Signs an access token directly, bypassing the token endpoint (and its counters): for tests of the
   * resource APIs that need a token the endpoint would not give (expired, other roles, other audience).
   */
  mintAccessToken(input: {
    tenantId: string;
    resource: ResourceKey;
    roles?: string[];
    lifetimeSeconds?: number;
  }): Promise<string>;
  close(): Promise<void>;
}

/** Where a sandbox keeps what changed (consents, added tenants, incident edits, clock) across restarts. */
export interface SandboxPersistence {
  /** The state file (e.g. `DATA_DIR/sandbox-state.json`): read at start, written atomically after changes. */
  stateFile: string;
  /** A failed write (the sandbox has no logger; the next change tries again). */
  onWriteError?: (error: Error) => void;
}

/** The path prefix of the control API; the server's own code never calls it. */
export const CONTROL_PREFIX = "/_sandbox";

/**
 * Starts the sandbox. Seeding is cheap (incidents are generated lazily per tenant), so start-up costs
 * the two RSA key generations, about 0.2 s, even at 1,000 tenants.
 */
export async function startSandbox(options: SandboxOptions = {}, persistence?: SandboxPersistence): Promise<Sandbox> {
  const host = options.host ?? "127.0.0.1";
  if (!isLoopback(host)) throw new Error(`the sandbox listens on loopback only, not ${host}`);
  const ctx = new SandboxContext(options);
  // A damaged or foreign state file stops the start (SandboxStateError says which file and what to do).
  const saved = persistence ? await readSandboxState(persistence.stateFile, ctx.options.seed) : undefined;
  if (saved) ctx.restoreState(saved);
  const [tls, signingKey] = await Promise.all([createLoopbackTlsIdentity(), createSigningKey()]);
  const incidents = new IncidentStore(ctx, saved ? { anchorMs: saved.anchorMs } : {});
  if (saved) incidents.restore(saved.incidents);
  const writer = persistence
    ? new SandboxStateWriter(
        persistence.stateFile,
        () => stateOf(ctx, incidents),
        persistence.onWriteError ? { onError: persistence.onWriteError } : {},
      )
    : undefined;
  if (writer) ctx.onStateChange = () => writer.changed();
  const services: SandboxServices = { ctx, signingKey, incidents };

  const app = Fastify({
    https: { key: tls.keyPem, cert: tls.certPem },
    logger: false,
    bodyLimit: 1024 * 1024,
    // Keep-alive sockets of a closing sandbox must not hold close() for long.
    forceCloseConnections: true,
    return503OnClosing: true,
  });
  // Entra's token endpoints take form bodies; parse them as a plain string map.
  app.addContentTypeParser(
    "application/x-www-form-urlencoded",
    { parseAs: "string" },
    (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    },
  );
  app.addHook("onSend", async (request, _reply, payload) => {
    const fault = request.sandboxBodyFault;
    if (!fault || typeof payload !== "string") return payload;
    return applyBodyFault(fault, payload);
  });

  registerEntraRoutes(app, services);
  registerDefenderRoutes(app, services);
  registerGraphRoutes(app, services);
  registerControlRoutes(app, services);

  await app.listen({ host, port: options.port ?? 0 });
  const port = listeningPort(app);
  ctx.baseUrl = `https://localhost:${port}`;

  let activityTimer: NodeJS.Timeout | undefined;
  if (ctx.options.activity) {
    const { intervalMs, changesPerTick } = ctx.options.activity;
    activityTimer = setInterval(() => incidents.applyActivity(changesPerTick), intervalMs);
    activityTimer.unref();
  }

  return {
    url: ctx.baseUrl,
    port,
    caCertPem: tls.certPem,
    clientId: ctx.app.clientId,
    get clientSecret() {
      return ctx.app.secrets[0]?.value ?? "";
    },
    tenants: ctx.tenants,
    context: ctx,
    incidents,
    async mintAccessToken(input) {
      const tenant = ctx.findTenant(input.tenantId);
      if (!tenant) throw new Error(`no sandbox tenant ${input.tenantId}`);
      const issued = await issueAccessToken(ctx, signingKey, {
        tenant,
        resource: RESOURCES[input.resource],
        roles: input.roles ?? grantedRoles(tenant, input.resource),
        credentialType: "secret",
        ...(input.lifetimeSeconds !== undefined ? { lifetimeSeconds: input.lifetimeSeconds } : {}),
      });
      return issued.accessToken;
    },
    async close() {
      if (activityTimer) clearInterval(activityTimer);
      for (const reply of ctx.hungReplies) reply.raw.socket?.destroy();
      ctx.hungReplies.clear();
      await app.close();
      // After the listener: no change can arrive once the last state is written. A failure went to onWriteError.
      await writer?.flush().catch(() => undefined);
    },
  };
}

/** What the state file keeps of a running sandbox. */
function stateOf(ctx: SandboxContext, incidents: IncidentStore): SandboxState {
  const consents: SandboxState["consents"] = {};
  for (const id of ctx.consentChangedIds) {
    const tenant = ctx.findTenant(id);
    if (tenant) consents[id] = tenant.consent;
  }
  return {
    version: 1,
    seed: ctx.options.seed,
    anchorMs: incidents.anchorMs,
    clockOffsetMs: ctx.clockOffset,
    addedTenants: ctx.addedTenants,
    consents,
    incidents: incidents.snapshot(),
  };
}

function listeningPort(app: FastifyInstance): number {
  const address = app.server.address();
  if (!address || typeof address === "string") throw new Error("sandbox is not listening on a TCP port");
  return address.port;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Turns a well-formed JSON body into the broken one a fault asks for. */
function applyBodyFault(fault: FaultSpec, payload: string): string | Readable {
  switch (fault.kind) {
    case "truncated-json":
      // Complete at the HTTP level (right Content-Length), cut in the middle of the JSON.
      return payload.slice(0, Math.max(1, Math.floor(payload.length / 2)));
    case "malformed-json":
      return `${payload.slice(0, Math.max(1, Math.floor(payload.length / 3)))},,<html>upstream proxy error</html>`;
    case "slow-body":
      return dribble(payload, fault.durationMs ?? 5000);
    default:
      return payload;
  }
}

/** Streams a body in ten pieces spread over `durationMs`. */
function dribble(payload: string, durationMs: number): Readable {
  const pieces = 10;
  const size = Math.ceil(payload.length / pieces);
  let index = 0;
  return new Readable({
    read() {
      if (index >= pieces) {
        this.push(null);
        return;
      }
      const chunk = payload.slice(index * size, (index + 1) * size);
      index++;
      setTimeout(() => this.push(chunk), durationMs / pieces);
    },
  });
}
