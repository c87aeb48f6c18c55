import { z } from "zod";
import { CALLER_ROLES, type Grant } from "./auth/caller.js";

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const emptyAsUndefined = (value: unknown) => (typeof value === "string" && value.trim() === "" ? undefined : value);
const optionalString = z.preprocess(emptyAsUndefined, z.string().optional());
const httpsUrl = (fallback: string) =>
  z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .default(fallback)
      .pipe(z.url({ protocol: /^https$/, error: "must be an https:// URL" }))
      .transform((url) => url.replace(/\/+$/, "")),
  );
const int = (fallback: number, min: number, max: number) =>
  z.preprocess(emptyAsUndefined, z.coerce.number().int().min(min).max(max).default(fallback));
const bool = z.preprocess(
  emptyAsUndefined,
  z
    .enum(["true", "false", "1", "0", "yes", "no", "on", "off"], { error: "must be true or false" })
    .transform((v) => ["true", "1", "yes", "on"].includes(v))
    .optional(),
);
const commaList = z.preprocess(
  emptyAsUndefined,
  z
    .string()
    .optional()
    .transform((v) => (v === undefined ? [] : v.split(",").map((s) => s.trim()).filter((s) => s.length > 0))),
);

/** Absolute http(s) URLs, comma-separated, without a fragment (Entra refuses reply URLs with one). */
const urlList = commaList.pipe(
  z.array(z.url({ protocol: /^https?$/, error: "must be absolute http(s) URLs, comma-separated" }).refine((u) => !u.includes("#"), "must not carry a #fragment")),
);

const roleName = z.enum(CALLER_ROLES);
/** One app role's grant in AUTH_ENTRA_ROLE_MAP: a role and the tenants it covers, stated explicitly. */
const grantSchema = z
  .object({
    role: roleName,
    allTenants: z.boolean().optional(),
    tenantIds: z.array(z.string().regex(GUID, "tenant ids are GUIDs")).optional(),
    tenantTags: z.array(z.string().min(1)).optional(),
  })
  .strict()
  .refine((g) => g.allTenants === true || (g.tenantIds?.length ?? 0) + (g.tenantTags?.length ?? 0) > 0, {
    error: "each grant needs allTenants: true or some tenantIds / tenantTags",
  })
  .transform(
    (g): Grant => ({
      role: g.role,
      scope: {
        allTenants: g.allTenants === true,
        tenantIds: (g.tenantIds ?? []).map((id) => id.toLowerCase()),
        tenantTags: g.tenantTags ?? [],
      },
    }),
  );
const roleMapSchema = z.preprocess(
  (value) => {
    const v = emptyAsUndefined(value);
    if (typeof v !== "string") return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return "not JSON";
    }
  },
  z.record(z.string().min(1), grantSchema, { error: "must be a JSON object of app role → grant" }).optional(),
);

/** Environment variables Crosswatch reads; the README's configuration table mirrors this schema. */
const envSchema = z.object({
  PORT: int(4000, 0, 65_535),
  HOST: z.preprocess(emptyAsUndefined, z.string().default("127.0.0.1")),
  METRICS_PORT: z.preprocess(
    emptyAsUndefined,
    z.union([z.literal("off"), z.coerce.number().int().min(0).max(65_535)], { error: "must be a port (0 to 65535) or off" }).optional(),
  ),
  METRICS_HOST: z.preprocess(emptyAsUndefined, z.string().default("127.0.0.1")),
  METRICS_TOKEN: z.preprocess(emptyAsUndefined, z.string().min(32, "must be at least 32 characters").optional()),
  REQUEST_TIMEOUT_MS: int(10_000, 100, 600_000),
  MAX_CONCURRENT_OPERATIONS: int(32, 1, 10_000),
  MAX_QUEUED_OPERATIONS: int(256, 0, 100_000),
  LOG_LEVEL: z.preprocess(
    emptyAsUndefined,
    z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  ),
  AZURE_CLIENT_ID: z.preprocess(
    emptyAsUndefined,
    z.string().regex(GUID, "must be the app's client id (a GUID)").optional(),
  ),
  AZURE_CLIENT_SECRET: optionalString,
  AZURE_CLIENT_CERTIFICATE_PATH: optionalString,
  AZURE_AUTHORITY_HOST: httpsUrl("https://login.microsoftonline.com"),
  DEFENDER_API_BASE: httpsUrl("https://api.security.microsoft.com"),
  GRAPH_API_BASE: httpsUrl("https://graph.microsoft.com/v1.0"),
  INCIDENTS_BACKEND: z.preprocess(emptyAsUndefined, z.enum(["defender", "graph"]).default("defender")),
  HUNTING_ENABLED: bool,
  HUNTING_BACKEND: z.preprocess(emptyAsUndefined, z.enum(["defender", "graph"]).default("graph")),
  HUNTING_ROW_LIMIT: int(100_000, 1, 100_000),
  HUNTING_GRAPH_CALLS_PER_MINUTE: int(45, 1, 10_000),
  DATABASE_URL: z.preprocess(
    emptyAsUndefined,
    z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// connection string").optional(),
  ),
  DATA_DIR: z.preprocess(emptyAsUndefined, z.string().default("./data")),
  REDIS_PREFIX: z.preprocess(emptyAsUndefined, z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "letters, digits, _ . - (1 to 64)").default("cw")),
  REDIS_URL: z.preprocess(
    emptyAsUndefined,
    z.string().regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL").optional(),
  ),
  TOKEN_CACHE_KEY: z.preprocess(
    emptyAsUndefined,
    z.string().min(32, "must be at least 32 characters (shared by every replica)").optional(),
  ),
  PUBLIC_URL: z.preprocess(
    emptyAsUndefined,
    z.url({ protocol: /^https?$/, error: "must be the http(s) URL browsers reach Crosswatch at" }).optional(),
  ),
  CONSENT_STATE_SECRET: z.preprocess(
    emptyAsUndefined,
    z.string().min(32, "must be at least 32 characters (shared by every replica)").optional(),
  ),
  CONSENT_LINK_TTL_SECONDS: int(7 * 86_400, 60, 30 * 86_400),
  CONSENT_REDIRECT_URIS: urlList,
  CONSENT_CALLBACK_RATE_PER_MINUTE: int(30, 1, 100_000),
  INCIDENT_FRESHNESS_SECONDS: int(30, 0, 3600),
  TENANT_FAILURE_MEMORY_SECONDS: int(60, 0, 3600),
  INCIDENT_PAGES_PER_REFRESH: int(100, 1, 10_000),
  INCIDENT_WINDOW_DAYS: int(90, 1, 3650),
  INCIDENT_SYNC: bool,
  INCIDENT_SYNC_CONCURRENCY: int(32, 1, 256),
  INCIDENT_SYNC_QUIET_SECONDS: int(300, 1, 86_400),
  INCIDENT_SYNC_LEASE_SECONDS: int(30, 1, 3600),
  INCIDENT_FIRST_LOAD_WAIT_MS: int(2_000, 0, 300_000),
  OPERATION_TIMEOUT_MS: int(20_000, 100, 300_000),
  AUTH_ANONYMOUS: bool,
  AUTH_ENTRA_AUDIENCE: commaList,
  AUTH_ENTRA_TENANTS: commaList,
  AUTH_ENTRA_ROLE_MAP: roleMapSchema,
  AUTH_ENTRA_CLOCK_TOLERANCE_SECONDS: int(30, 0, 60),
  INTROSPECTION: bool,
  FEDERATION_TRACING: bool,
  LIMIT_MAX_DEPTH: int(12, 2, 100),
  LIMIT_MAX_ALIASES: int(30, 0, 1000),
  LIMIT_MAX_DIRECTIVES: int(20, 0, 1000),
  LIMIT_MAX_TOKENS: int(5000, 100, 1_000_000),
  LIMIT_MAX_COST: int(50_000, 100, 100_000_000),
  BODY_LIMIT_BYTES: int(1024 * 1024, 1024, 64 * 1024 * 1024),
  SANDBOX: bool,
  SANDBOX_SEED: int(42, 0, 2 ** 31 - 1),
  SANDBOX_TENANTS: int(13, 1, 1000),
  SANDBOX_INCIDENTS: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(0).max(1000).optional()),
  SANDBOX_LATENCY_MS: int(0, 0, 60_000),
  SANDBOX_PORT: int(0, 0, 65_535),
});

export type IncidentsBackend = "defender" | "graph";
/** Where a tenant's hunting queries run: Graph `runHuntingQuery` or the legacy `/api/advancedhunting/run`. */
export type HuntingBackend = "defender" | "graph";

/** Credentials of the partner's multi-tenant app. Never logged, never returned. */
export type AppCredential =
  | { kind: "secret"; clientId: string; clientSecret: string }
  | { kind: "certificate"; clientId: string; certificatePath: string };

export interface Config {
  /** `sandbox` when no Azure app is configured: the built-in emulator stands in for Entra ID and Defender. */
  mode: "sandbox" | "azure";
  port: number;
  host: string;
  http: {
    /**
     * Time to receive a whole request, headers and body (then 408 and the connection closed). Not the
     * operation: that is bounded by `incidents.operationTimeoutMs`, once the body has arrived.
     */
    requestTimeoutMs: number;
    /** Time to receive the request headers: min(10 s, requestTimeoutMs). */
    headersTimeoutMs: number;
    /** GraphQL operations running at once; more wait in a queue of `maxQueuedOperations`, then 503. */
    maxConcurrentOperations: number;
    maxQueuedOperations: number;
  };
  /** Prometheus metrics, on a listener of their own (never the API's); undefined: METRICS_PORT=off. */
  metrics: { host: string; port: number; token: string | undefined } | undefined;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Undefined in sandbox mode until the sandbox has started and registered its own app. */
  credential: AppCredential | undefined;
  upstream: {
    authorityHost: string;
    defenderApiBase: string;
    graphApiBase: string;
    defaultBackend: IncidentsBackend;
    /** PEM certificates trusted besides the system roots (the sandbox's own certificate). */
    trustedCaPem: string[];
  };
  store: {
    /** PostgreSQL when set; otherwise embedded PGlite in `dataDir` (`memory://` keeps it in memory). */
    databaseUrl: string | undefined;
    dataDir: string;
    /** Redis shared by replicas: rate budgets, refresh locks, the incident cache. Unset: all in-process. */
    redisUrl: string | undefined;
    /** Key prefix in Redis: deployments (or tests) sharing one Redis keep apart by it. */
    redisPrefix: string;
    /**
     * TOKEN_CACHE_KEY: with `redisUrl`, app-only tokens are shared by every replica through Redis, encrypted
     * under a key derived from this (src/auth/shared-token-cache.ts). A secret: never logged, never returned.
     */
    tokenCacheKey: string | undefined;
  };
  consent: {
    /** Base URL browsers reach Crosswatch at; the consent callback is `${publicUrl}/consent/callback`. */
    publicUrl: string | undefined;
    /** HMAC key of consent states; random per process when unset (links then die with the process). */
    stateSecret: string | undefined;
    linkTtlSeconds: number;
    /** Redirect URIs a consent link may name besides `${publicUrl}/consent/callback` (exact match). */
    redirectUris: string[];
    /** `/consent/callback` requests one client address may make per minute (then 429). */
    callbackRatePerMinute: number;
  };
  incidents: {
    /** Within this age a tenant's cached incidents are served with no upstream call. */
    freshnessSeconds: number;
    /** Deadline of one GraphQL operation; a slow tenant is reported, not waited for. */
    operationTimeoutMs: number;
    /**
     * How long a tenant's lasting failure (no consent, role missing, tenant unknown, credential refused) is
     * answered again without any token request or upstream call; 0 asks every time. Per replica.
     */
    failureMemorySeconds: number;
    /** List pages one tenant sync reads at most; a larger tenant loads across syncs, none read twice. */
    pagesPerRefresh: number;
    /** Incidents last updated longer ago than this many days are not mirrored. */
    windowDays: number;
    /** Whether this replica runs the background sync engine (else tenants sync only when a query waits for them). */
    syncEnabled: boolean;
    /** Tenants the engine syncs at once in this replica. */
    syncConcurrency: number;
    /** Longest poll interval of a quiet tenant. */
    syncQuietSeconds: number;
    /** A tenant's sync lease: how soon another replica takes a dead one's tenants over. */
    syncLeaseSeconds: number;
    /** How long a query waits for a never-synced tenant's first sync run before answering with its pages so far. */
    firstLoadWaitMs: number;
  };
  hunting: {
    /** HUNTING_ENABLED (default: on in the sandbox only): consent links ask for the hunting permissions. */
    enabled: boolean;
    /** The hunting backend of tenants whose `huntingBackend` is unset. */
    defaultBackend: HuntingBackend;
    /**
     * Rows one tenant's answer holds at most (both services cut at 100,000; assumed for Graph): an answer
     * with this many is reported as truncated.
     */
    rowLimit: number;
    /** Graph runHuntingQuery calls per tenant and minute (ASSUMED budget: Graph publishes only a CPU quota). */
    graphCallsPerMinute: number;
  };
  auth: {
    /** Requests without credentials act as an admin over every tenant: sandbox only. */
    anonymous: boolean;
    /** Entra ID bearer tokens of the partner's own users (frontends), when configured. */
    entra: EntraCallerConfig | undefined;
  };
  limits: {
    maxDepth: number;
    maxAliases: number;
    maxDirectives: number;
    maxTokens: number;
    /** Largest estimated cost of one operation; tenant fan-out counts (see src/http/limits.ts). */
    maxCost: number;
    bodyLimitBytes: number;
    introspection: boolean;
    /**
     * Answer `apollo-federation-include-trace: ftv1` with per-field timings (Apollo's inline trace for a
     * gateway's usage reporting). Default on in the sandbox only: the timings describe the schema and the backends.
     */
    federationTracing: boolean;
  };
  sandbox: {
    /**
     * SANDBOX=true: sandbox mode was chosen, not inferred from a missing AZURE_CLIENT_ID. Needed to run the
     * sandbox on DATABASE_URL or on a store that holds data but no recorded mode (src/deployment-mode.ts).
     */
    chosen: boolean;
    seed: number;
    tenantCount: number;
    incidentsPerTenant: number | undefined;
    latencyMs: number;
    port: number;
  };
}

/** How bearer tokens of the partner's users are checked; issuer and key set come from the authority host. */
export interface EntraCallerConfig {
  /** Accepted `aud` values: the API's app id URI and/or client id. */
  audiences: string[];
  /** Tenants whose users may call (`tid` and issuer): normally the partner's own tenant. Lower-case GUIDs. */
  tenants: string[];
  /** App role value (from the token's `roles`) → the grant it gives. */
  roleMap: Record<string, Grant>;
  clockToleranceSeconds: number;
}

const ALL: Grant["scope"] = { allTenants: true, tenantIds: [], tenantTags: [] };

/** The role map when AUTH_ENTRA_ROLE_MAP is unset: three app roles, each over every tenant. */
export const DEFAULT_ROLE_MAP: Record<string, Grant> = {
  "Crosswatch.Reader": { role: "READER", scope: ALL },
  "Crosswatch.Responder": { role: "RESPONDER", scope: ALL },
  "Crosswatch.Admin": { role: "ADMIN", scope: ALL },
};

/** A configuration problem, with every offending variable named and no value echoed. */
export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
  }
}

/**
 * Reads and validates the environment once, at start-up. Secrets are kept only inside `credential`;
 * error messages name variables, never their values.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`));
  }
  const e = parsed.data;
  const problems: string[] = [];
  let credential: AppCredential | undefined;
  if (e.AZURE_CLIENT_ID) {
    if (e.AZURE_CLIENT_SECRET && e.AZURE_CLIENT_CERTIFICATE_PATH) {
      problems.push("set one of AZURE_CLIENT_SECRET and AZURE_CLIENT_CERTIFICATE_PATH, not both");
    } else if (e.AZURE_CLIENT_SECRET) {
      credential = { kind: "secret", clientId: e.AZURE_CLIENT_ID, clientSecret: e.AZURE_CLIENT_SECRET };
    } else if (e.AZURE_CLIENT_CERTIFICATE_PATH) {
      credential = { kind: "certificate", clientId: e.AZURE_CLIENT_ID, certificatePath: e.AZURE_CLIENT_CERTIFICATE_PATH };
    } else {
      problems.push("AZURE_CLIENT_ID is set: also set AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH");
    }
  } else if (e.AZURE_CLIENT_SECRET || e.AZURE_CLIENT_CERTIFICATE_PATH) {
    problems.push("AZURE_CLIENT_SECRET / AZURE_CLIENT_CERTIFICATE_PATH need AZURE_CLIENT_ID");
  }
  const mode = e.AZURE_CLIENT_ID ? "azure" : "sandbox";
  // Sandbox mode makes anyone an admin: it must be chosen, never fallen into because a secret failed to load.
  // What the store says (and DATABASE_URL without SANDBOX=true) is checked at start-up: src/deployment-mode.ts.
  if (e.SANDBOX === true && e.AZURE_CLIENT_ID) {
    problems.push("SANDBOX=true and AZURE_CLIENT_ID are both set: unset one (the sandbox uses its own emulated app)");
  } else if (e.SANDBOX === false && !e.AZURE_CLIENT_ID) {
    problems.push("AZURE_CLIENT_ID is unset and SANDBOX=false: set AZURE_CLIENT_ID and its credential (did a secret fail to load?)");
  }
  // Metrics name every customer tenant: never on the API's own listener.
  const metricsPort = e.METRICS_PORT ?? (e.PORT === 0 ? 0 : 9464);
  if (metricsPort !== "off" && metricsPort !== 0 && metricsPort === e.PORT) {
    problems.push("METRICS_PORT: must differ from PORT (metrics are never served beside the API); off disables them");
  }
  if (mode === "azure" && e.AUTH_ANONYMOUS === true) {
    problems.push("AUTH_ANONYMOUS: only the sandbox may run without caller authentication");
  }
  let entra: EntraCallerConfig | undefined;
  if (e.AUTH_ENTRA_AUDIENCE.length > 0 || e.AUTH_ENTRA_TENANTS.length > 0) {
    if (e.AUTH_ENTRA_AUDIENCE.length === 0) problems.push("AUTH_ENTRA_TENANTS is set: also set AUTH_ENTRA_AUDIENCE");
    if (e.AUTH_ENTRA_TENANTS.length === 0) problems.push("AUTH_ENTRA_AUDIENCE is set: also set AUTH_ENTRA_TENANTS");
    const badTenant = e.AUTH_ENTRA_TENANTS.find((t) => !GUID.test(t));
    if (badTenant !== undefined) problems.push("AUTH_ENTRA_TENANTS: must be tenant ids (GUIDs), comma-separated");
    entra = {
      audiences: e.AUTH_ENTRA_AUDIENCE,
      tenants: e.AUTH_ENTRA_TENANTS.map((t) => t.toLowerCase()),
      roleMap: e.AUTH_ENTRA_ROLE_MAP ?? DEFAULT_ROLE_MAP,
      clockToleranceSeconds: e.AUTH_ENTRA_CLOCK_TOLERANCE_SECONDS,
    };
  } else if (e.AUTH_ENTRA_ROLE_MAP) {
    problems.push("AUTH_ENTRA_ROLE_MAP needs AUTH_ENTRA_AUDIENCE and AUTH_ENTRA_TENANTS");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    mode,
    port: e.PORT,
    host: e.HOST,
    http: {
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      headersTimeoutMs: Math.min(10_000, e.REQUEST_TIMEOUT_MS),
      maxConcurrentOperations: e.MAX_CONCURRENT_OPERATIONS,
      maxQueuedOperations: e.MAX_QUEUED_OPERATIONS,
    },
    metrics: metricsPort === "off" ? undefined : { host: e.METRICS_HOST, port: metricsPort, token: e.METRICS_TOKEN },
    logLevel: e.LOG_LEVEL,
    credential,
    upstream: {
      authorityHost: e.AZURE_AUTHORITY_HOST,
      defenderApiBase: e.DEFENDER_API_BASE,
      graphApiBase: e.GRAPH_API_BASE,
      defaultBackend: e.INCIDENTS_BACKEND,
      trustedCaPem: [],
    },
    store: { databaseUrl: e.DATABASE_URL, dataDir: e.DATA_DIR, redisUrl: e.REDIS_URL, redisPrefix: e.REDIS_PREFIX, tokenCacheKey: e.TOKEN_CACHE_KEY },
    consent: {
      publicUrl: e.PUBLIC_URL?.replace(/\/+$/, ""),
      stateSecret: e.CONSENT_STATE_SECRET,
      linkTtlSeconds: e.CONSENT_LINK_TTL_SECONDS,
      redirectUris: e.CONSENT_REDIRECT_URIS,
      callbackRatePerMinute: e.CONSENT_CALLBACK_RATE_PER_MINUTE,
    },
    incidents: {
      freshnessSeconds: e.INCIDENT_FRESHNESS_SECONDS,
      operationTimeoutMs: e.OPERATION_TIMEOUT_MS,
      failureMemorySeconds: e.TENANT_FAILURE_MEMORY_SECONDS,
      pagesPerRefresh: e.INCIDENT_PAGES_PER_REFRESH,
      windowDays: e.INCIDENT_WINDOW_DAYS,
      syncEnabled: e.INCIDENT_SYNC ?? true,
      syncConcurrency: e.INCIDENT_SYNC_CONCURRENCY,
      syncQuietSeconds: e.INCIDENT_SYNC_QUIET_SECONDS,
      syncLeaseSeconds: e.INCIDENT_SYNC_LEASE_SECONDS,
      firstLoadWaitMs: e.INCIDENT_FIRST_LOAD_WAIT_MS,
    },
    hunting: {
      enabled: e.HUNTING_ENABLED ?? mode === "sandbox",
      defaultBackend: e.HUNTING_BACKEND,
      rowLimit: e.HUNTING_ROW_LIMIT,
      graphCallsPerMinute: e.HUNTING_GRAPH_CALLS_PER_MINUTE,
    },
    auth: { anonymous: e.AUTH_ANONYMOUS ?? mode === "sandbox", entra },
    limits: {
      maxDepth: e.LIMIT_MAX_DEPTH,
      maxAliases: e.LIMIT_MAX_ALIASES,
      maxDirectives: e.LIMIT_MAX_DIRECTIVES,
      maxTokens: e.LIMIT_MAX_TOKENS,
      maxCost: e.LIMIT_MAX_COST,
      bodyLimitBytes: e.BODY_LIMIT_BYTES,
      introspection: e.INTROSPECTION ?? mode === "sandbox",
      federationTracing: e.FEDERATION_TRACING ?? mode === "sandbox",
    },
    sandbox: {
      chosen: e.SANDBOX === true,
      seed: e.SANDBOX_SEED,
      tenantCount: e.SANDBOX_TENANTS,
      incidentsPerTenant: e.SANDBOX_INCIDENTS,
      latencyMs: e.SANDBOX_LATENCY_MS,
      port: e.SANDBOX_PORT,
    },
  };
}
