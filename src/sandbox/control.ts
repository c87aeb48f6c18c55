import type { FastifyInstance, FastifyReply } from "fastify";
import { z } from "zod";
import { describeCertificate } from "./certs.js";
import { ENDPOINTS, FAULT_KINDS, type EndpointSelector } from "./context.js";
import type { SandboxServices } from "./services.js";
import { ADDED_TENANT_FIRST_INDEX, newSandboxTenant, type SandboxTenant } from "./tenants.js";
import { issueCallerToken, SANDBOX_CALLER_AUDIENCE, SANDBOX_PARTNER_TENANT_ID, setOpaqueTokens, usesOpaqueTokens } from "./tokens.js";

const endpointSelector = z.enum([...ENDPOINTS, "incidents", "hunting", "defender", "graph", "all"] as [
  EndpointSelector,
  ...EndpointSelector[],
]);

const faultBody = z
  .object({
    kind: z.enum(FAULT_KINDS),
    endpoints: z.array(endpointSelector).min(1).optional(),
    times: z.number().int().positive().optional(),
    status: z.union([z.literal(500), z.literal(502), z.literal(503), z.literal(504)]).optional(),
    retryAfterSeconds: z.number().int().min(0).max(86_400).optional(),
    durationMs: z.number().int().min(0).max(600_000).optional(),
  })
  .strict();

const latencyBody = z.union([
  z.object({ fixedMs: z.number().min(0).max(120_000) }).strict(),
  z.object({ medianMs: z.number().min(0).max(120_000), p95Ms: z.number().min(0).max(600_000) }).strict(),
]);

const pagingBody = z
  .object({
    skipCeiling: z.number().int().min(1).max(10_000_000).nullable().optional(),
    skipCeilingAnswer: z.enum(["400", "empty"]).optional(),
    graphOrderBy: z.enum(["honour", "ignore"]).optional(),
    defenderOrderBy: z.enum(["honour", "ignore", "reject"]).optional(),
  })
  .strict();

const rateRules = z.array(z.object({ limit: z.number().int().min(0).max(1_000_000), windowSeconds: z.number().int().min(1).max(86_400) }).strict()).max(4);

const huntingBody = z
  .object({
    rowLimit: z.number().int().min(1).max(10_000_000).optional(),
    legacyRetired: z.boolean().optional(),
    /** Per-tenant call quotas of each hunting API (see SandboxOptions.rateLimits). */
    rateLimits: z.object({ graph: rateRules.optional(), defender: rateRules.optional() }).strict().optional(),
  })
  .strict();

const grantBody = z
  .object({
    defender: z.array(z.string()).optional(),
    graph: z.array(z.string()).optional(),
  })
  .strict();

/** Most tenants `POST /_sandbox/tenants` adds to one sandbox (they are kept in its state file). */
const MAX_ADDED_TENANTS = 100;

const newTenantBody = z
  .object({
    displayName: z.string().trim().min(1).max(256),
    /** The initial domain's first label (`<domain>.onmicrosoft.com`); derived from the name when absent. */
    domain: z.string().regex(/^[a-z0-9][a-z0-9-]{0,39}$/).optional(),
    tags: z.array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/)).max(32).optional(),
    incidents: z.number().int().min(0).max(1000).optional(),
  })
  .strict();

const callerTokenBody = z
  .object({
    roles: z.array(z.string().min(1).max(128)).max(50).optional(),
    tenantId: z.string().min(1).max(64).optional(),
    audience: z.string().min(1).max(256).optional(),
    name: z.string().min(1).max(128).optional(),
    oid: z.string().min(1).max(64).optional(),
    expiresInSeconds: z.number().int().min(-86_400 * 365).max(86_400).optional(),
    notBeforeInSeconds: z.number().int().min(-86_400).max(86_400 * 365).optional(),
    issuer: z.string().min(1).max(512).optional(),
    version: z.union([z.literal(1), z.literal(2)]).optional(),
    omitClaims: z.array(z.string()).max(20).optional(),
  })
  .strict();

/**
 * The control API under /_sandbox: counters, latency, faults, consent, activity and clock, for tests,
 * benchmarks and people trying failure modes by hand. Crosswatch's own code never calls it.
 */
export function registerControlRoutes(app: FastifyInstance, services: SandboxServices): void {
  const { ctx, incidents } = services;
  void app.register(
    async (scope) => {
      scope.setErrorHandler(async (error: Error & { statusCode?: number }, _request, reply) => {
        const status = error.statusCode ?? 500;
        return reply.code(status >= 400 && status < 600 ? status : 500).send({
          error: { code: status < 500 ? "BadRequest" : "InternalError", message: error.message },
        });
      });
      scope.setNotFoundHandler(async (request, reply) =>
        reply.code(404).send({ error: { code: "NotFound", message: `no control route ${request.method} ${request.url}` } }),
      );

      scope.get("/", async () => ({
        url: ctx.baseUrl,
        clientId: ctx.app.clientId,
        appDisplayName: ctx.app.displayName,
        partnerTenantId: SANDBOX_PARTNER_TENANT_ID,
        callerAudience: SANDBOX_CALLER_AUDIENCE,
        seed: ctx.options.seed,
        tenantCount: ctx.tenants.length,
        accessTokenVersion: ctx.options.accessTokenVersion,
        latency: ctx.latency ?? null,
        rateLimits: ctx.options.rateLimits,
        clock: new Date(ctx.now()).toISOString(),
      }));

      scope.get("/tenants", async () => ({ value: ctx.tenants.map(describeTenant) }));
      // A customer directory of one's own, not consented yet: onboard it (registerTenant, consentLink) by hand.
      scope.post("/tenants", async (request, reply) => {
        const parsed = newTenantBody.safeParse(request.body ?? {});
        if (!parsed.success) return badRequest(reply, parsed.error);
        if (ctx.addedTenants.length >= MAX_ADDED_TENANTS) {
          return reply.code(409).send({ error: { code: "Conflict", message: `at most ${MAX_ADDED_TENANTS} tenants can be added to a sandbox` } });
        }
        const { displayName, domain, tags, incidents: incidentCount } = parsed.data;
        if (domain !== undefined && ctx.findTenant(`${domain}.onmicrosoft.com`)) {
          return reply.code(409).send({ error: { code: "Conflict", message: `the domain ${domain}.onmicrosoft.com is taken` } });
        }
        const tenant = newSandboxTenant(
          {
            displayName: displayName.trim(),
            ...(domain !== undefined ? { domain } : {}),
            ...(tags !== undefined ? { tags } : {}),
            ...(incidentCount !== undefined ? { incidents: incidentCount } : {}),
            index: ADDED_TENANT_FIRST_INDEX + ctx.addedTenants.length,
            now: ctx.now(),
          },
          (candidate) => ctx.findTenant(candidate) !== undefined,
        );
        ctx.addTenant(tenant);
        return reply.code(201).send(describeTenant(tenant));
      });

      // A signed-in analyst's token for the Crosswatch API (what a frontend would send), with overrides.
      scope.post("/caller-tokens", async (request, reply) => {
        const parsed = callerTokenBody.safeParse(request.body ?? {});
        if (!parsed.success) return badRequest(reply, parsed.error);
        const body = parsed.data;
        const expiresIn = body.expiresInSeconds ?? 3600;
        const issued = await issueCallerToken(ctx, services.signingKey, {
          roles: body.roles ?? ["Crosswatch.Admin"],
          tenantId: body.tenantId ?? SANDBOX_PARTNER_TENANT_ID,
          audience: body.audience ?? SANDBOX_CALLER_AUDIENCE,
          name: body.name ?? "Sandbox Analyst",
          oid: body.oid ?? "5e1d0c7a-3b2f-4e6d-9c8b-a7f6e5d4c3b2",
          expiresInSeconds: expiresIn,
          notBeforeInSeconds: body.notBeforeInSeconds ?? 0,
          issuer: body.issuer,
          version: body.version ?? 2,
          omitClaims: body.omitClaims ?? [],
        });
        return { accessToken: issued.accessToken, expiresOn: new Date(ctx.now() + expiresIn * 1000).toISOString(), claims: issued.claims };
      });

      scope.get("/counters", async () => ctx.counterSnapshot());
      scope.post("/counters/reset", async (request) => {
        const body = z
          .object({ rateLimits: z.boolean().optional() })
          .strict()
          .optional()
          .safeParse(request.body ?? undefined);
        ctx.resetCounters(body.success ? (body.data?.rateLimits ?? false) : false);
        return ctx.counterSnapshot();
      });

      // How the lists page (unconfirmed upstream behaviours, see SandboxOptions): skip ceiling and $orderby.
      const pagingView = () => ({
        skipCeiling: ctx.options.skipCeiling,
        skipCeilingAnswer: ctx.options.skipCeilingAnswer,
        graphOrderBy: ctx.options.graphOrderBy,
        defenderOrderBy: ctx.options.defenderOrderBy,
      });
      scope.get("/paging", async () => pagingView());
      scope.put("/paging", async (request, reply) => {
        const parsed = pagingBody.safeParse(request.body);
        if (!parsed.success) return badRequest(reply, parsed.error);
        const body = parsed.data;
        if (body.skipCeiling !== undefined) ctx.options.skipCeiling = body.skipCeiling;
        if (body.skipCeilingAnswer !== undefined) ctx.options.skipCeilingAnswer = body.skipCeilingAnswer;
        if (body.graphOrderBy !== undefined) ctx.options.graphOrderBy = body.graphOrderBy;
        if (body.defenderOrderBy !== undefined) ctx.options.defenderOrderBy = body.defenderOrderBy;
        return pagingView();
      });

      // Hunting knobs (README "Hunting in the sandbox"): row cap, legacy retirement, quotas.
      const huntingView = () => ({
        rowLimit: ctx.hunting.rowLimit,
        legacyRetired: ctx.legacyHuntingRetired(),
        rateLimits: { graph: ctx.options.rateLimits["graph.hunt"], defender: ctx.options.rateLimits["defender.hunt"] },
      });
      scope.get("/hunting", async () => huntingView());
      scope.put("/hunting", async (request, reply) => {
        const parsed = huntingBody.safeParse(request.body);
        if (!parsed.success) return badRequest(reply, parsed.error);
        const body = parsed.data;
        ctx.setHunting({ rowLimit: body.rowLimit, legacyRetired: body.legacyRetired });
        if (body.rateLimits?.graph) ctx.options.rateLimits["graph.hunt"] = body.rateLimits.graph;
        if (body.rateLimits?.defender) ctx.options.rateLimits["defender.hunt"] = body.rateLimits.defender;
        return huntingView();
      });

      scope.get("/latency", async () => ({ latency: ctx.latency ?? null }));
      scope.put("/latency", async (request, reply) => {
        const parsed = latencyBody.safeParse(request.body);
        if (!parsed.success) return badRequest(reply, parsed.error);
        ctx.latency = parsed.data;
        return { latency: ctx.latency };
      });
      scope.delete("/latency", async () => {
        ctx.latency = undefined;
        return { latency: null };
      });

      scope.get("/faults", async () => ctx.listFaults());
      scope.put<{ Params: { tenant: string } }>("/faults/:tenant", async (request, reply) => {
        const key = tenantKey(request.params.tenant);
        if (!key) return unknownTenant(reply, request.params.tenant);
        const parsed = faultBody.safeParse(request.body);
        if (!parsed.success) return badRequest(reply, parsed.error);
        ctx.setFault(key, dropUndefined(parsed.data));
        return ctx.listFaults();
      });
      scope.delete<{ Params: { tenant: string } }>("/faults/:tenant", async (request, reply) => {
        const key = tenantKey(request.params.tenant);
        if (!key) return unknownTenant(reply, request.params.tenant);
        ctx.clearFaults(key);
        return ctx.listFaults();
      });
      scope.delete("/faults", async () => {
        ctx.clearFaults();
        return ctx.listFaults();
      });

      scope.post<{ Params: { tenant: string } }>("/tenants/:tenant/revoke-consent", async (request, reply) => {
        const tenant = ctx.findTenant(request.params.tenant);
        if (!tenant) return unknownTenant(reply, request.params.tenant);
        tenant.consent = { granted: false, roles: { defender: [], graph: [] } };
        ctx.noteConsentChanged(tenant);
        return describeTenant(tenant);
      });
      scope.post<{ Params: { tenant: string } }>("/tenants/:tenant/grant-consent", async (request, reply) => {
        const tenant = ctx.findTenant(request.params.tenant);
        if (!tenant) return unknownTenant(reply, request.params.tenant);
        const parsed = grantBody.safeParse(request.body ?? {});
        if (!parsed.success) return badRequest(reply, parsed.error);
        tenant.consent = {
          granted: true,
          roles: {
            defender: tenant.resources.defender ? (parsed.data.defender ?? ctx.app.requiredRoles.defender) : [],
            graph: tenant.resources.graph ? (parsed.data.graph ?? ctx.app.requiredRoles.graph) : [],
          },
          grantedAt: ctx.now(),
        };
        ctx.noteConsentChanged(tenant);
        return describeTenant(tenant);
      });

      // Above how many incidents the tenant's Graph list fails with $expand=alerts (null: never).
      scope.put<{ Params: { tenant: string } }>("/tenants/:tenant/graph-expand", async (request, reply) => {
        const tenant = ctx.findTenant(request.params.tenant);
        if (!tenant) return unknownTenant(reply, request.params.tenant);
        const parsed = z
          .object({ failsAbove: z.number().int().min(0).nullable() })
          .strict()
          .safeParse(request.body);
        if (!parsed.success) return badRequest(reply, parsed.error);
        ctx.setGraphExpandFailsAbove(tenant.id, parsed.data.failsAbove);
        return { tenantId: tenant.id, failsAbove: ctx.graphExpandFailsAbove(tenant.id) };
      });
      scope.delete<{ Params: { tenant: string } }>("/tenants/:tenant/graph-expand", async (request, reply) => {
        const tenant = ctx.findTenant(request.params.tenant);
        if (!tenant) return unknownTenant(reply, request.params.tenant);
        ctx.setGraphExpandFailsAbove(tenant.id, undefined);
        return { tenantId: tenant.id, failsAbove: ctx.graphExpandFailsAbove(tenant.id) };
      });

      // Opaque access tokens for the tenant from now on (random strings, not JWTs), or JWTs again.
      scope.put<{ Params: { tenant: string } }>("/tenants/:tenant/token-format", async (request, reply) => {
        const tenant = ctx.findTenant(request.params.tenant);
        if (!tenant) return unknownTenant(reply, request.params.tenant);
        const parsed = z.object({ opaque: z.boolean() }).strict().safeParse(request.body);
        if (!parsed.success) return badRequest(reply, parsed.error);
        setOpaqueTokens(ctx, tenant.id, parsed.data.opaque);
        return { tenantId: tenant.id, opaque: usesOpaqueTokens(ctx, tenant.id) };
      });

      scope.post("/activity", async (request, reply) => {
        const parsed = z
          .object({ changes: z.number().int().min(1).max(10_000) })
          .strict()
          .safeParse(request.body);
        if (!parsed.success) return badRequest(reply, parsed.error);
        return incidents.applyActivity(parsed.data.changes);
      });

      scope.post("/clock", async (request, reply) => {
        const parsed = z
          .object({ advanceSeconds: z.number().int().min(0).max(30 * 86_400) })
          .strict()
          .safeParse(request.body);
        if (!parsed.success) return badRequest(reply, parsed.error);
        ctx.advanceClock(parsed.data.advanceSeconds * 1000);
        return { clock: new Date(ctx.now()).toISOString() };
      });

      scope.post("/app/certificates", async (request, reply) => {
        const parsed = z.object({ certPem: z.string().min(1) }).strict().safeParse(request.body);
        if (!parsed.success) return badRequest(reply, parsed.error);
        let credential;
        try {
          credential = describeCertificate(parsed.data.certPem);
        } catch {
          return reply.code(400).send({ error: { code: "BadRequest", message: "certPem is not a PEM certificate" } });
        }
        ctx.app.certificates.push(credential);
        return { thumbprintSha1: credential.thumbprintSha1, thumbprintSha256: credential.thumbprintSha256 };
      });
      scope.post("/app/secrets/expire", async () => {
        const now = ctx.now();
        for (const secret of ctx.app.secrets) secret.expiresAt = Math.min(secret.expiresAt, now - 1000);
        return { expired: ctx.app.secrets.length };
      });
    },
    { prefix: "/_sandbox" },
  );

  function tenantKey(raw: string): string | undefined {
    if (raw === "*") return "*";
    return ctx.findTenant(raw)?.id;
  }
}

/** What the control API says about a tenant: everything but secrets (there are none on a tenant). */
export function describeTenant(tenant: SandboxTenant): Record<string, unknown> {
  return {
    id: tenant.id,
    displayName: tenant.displayName,
    domain: tenant.domain,
    tags: tenant.tags,
    region: tenant.region,
    resources: tenant.resources,
    consent: {
      granted: tenant.consent.granted,
      roles: tenant.consent.roles,
      grantedAt: tenant.consent.grantedAt ? new Date(tenant.consent.grantedAt).toISOString() : null,
    },
    incidentCount: tenant.incidentCount,
    note: tenant.note ?? null,
  };
}

function badRequest(reply: FastifyReply, error: z.ZodError): FastifyReply {
  const message = error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");
  return reply.code(400).send({ error: { code: "BadRequest", message } });
}

function unknownTenant(reply: FastifyReply, raw: string): FastifyReply {
  return reply.code(404).send({ error: { code: "NotFound", message: `no sandbox tenant '${raw.slice(0, 80)}'` } });
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
