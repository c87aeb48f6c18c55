import type { ApolloServerPlugin } from "@apollo/server";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { TokenProvider } from "../auth/token-provider.js";
import type { RateBudget } from "../defender/rate-budget.js";
import type { UpstreamAttempt } from "../defender/http.js";
import type { IncidentService, TenantLoad } from "../incidents/incident-service.js";
import type { SyncEngine } from "../incidents/sync-engine.js";
import type { GraphQLContext } from "../resolvers/context.js";

export interface MetricsSources {
  tokenProvider: TokenProvider;
  incidents: IncidentService;
  budget: RateBudget;
  /** The background sync engine, when this replica runs one. */
  engine?: SyncEngine;
}

/**
 * Prometheus metrics of one app, in a registry of its own (several apps in one test process never meet).
 * Per-tenant series are kept to counters of upstream calls, 429s and errors (a tenant label on histograms
 * would multiply series by the bucket count); latency is per backend and operation.
 */
export function createMetrics(sources: MetricsSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const graphqlDuration = new Histogram({
    name: "crosswatch_graphql_request_duration_seconds",
    help: "GraphQL operations, from receipt to response, by operation type and outcome",
    labelNames: ["operation", "outcome"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20],
    registers,
  });
  const upstreamCalls = new Counter({
    name: "crosswatch_upstream_calls_total",
    help: "Attempts sent to the incident APIs, per tenant, backend, operation and status class (2xx, 4xx, 429, 5xx, none)",
    labelNames: ["tenant", "backend", "operation", "status"] as const,
    registers,
  });
  const upstreamDuration = new Histogram({
    name: "crosswatch_upstream_request_duration_seconds",
    help: "Latency of attempts sent to the incident APIs, per backend and operation",
    labelNames: ["backend", "operation"] as const,
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const servedAge = new Histogram({
    name: "crosswatch_incident_data_age_seconds",
    help: "Age of each tenant's incidents when served (freshness of the cache as callers see it)",
    buckets: [1, 5, 15, 30, 60, 120, 300, 900, 3600],
    registers,
  });
  const tenantOutcomes = new Counter({
    name: "crosswatch_tenant_loads_total",
    help: "Tenant loads by result: fresh from cache, refreshed, or failed (with the tenant error code)",
    labelNames: ["result", "code"] as const,
    registers,
  });
  // By reason only: a refused callback names a tenant it has not proven, so no tenant label (nor series per guess).
  const consentRejections = new Counter({
    name: "crosswatch_consent_callback_rejections_total",
    help: "Consent callbacks refused (forged, expired, replayed or cross-tenant state, malformed answer, rate limit), by reason",
    labelNames: ["reason"] as const,
    registers,
  });

  // Counters the services keep themselves, read at scrape time.
  const fromStats = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  fromStats("crosswatch_token_requests_total", "Token requests by resolvers and clients", () => sources.tokenProvider.stats().requests);
  fromStats("crosswatch_token_cache_hits_total", "Token requests answered from memory", () => sources.tokenProvider.stats().cacheHits);
  fromStats("crosswatch_token_acquisitions_total", "Token flights into MSAL", () => sources.tokenProvider.stats().acquisitions);
  fromStats("crosswatch_tokens_issued_total", "Token calls that reached Entra ID", () => sources.tokenProvider.stats().tokensIssued);
  fromStats("crosswatch_token_failures_total", "Token flights that failed", () => sources.tokenProvider.stats().failures);
  fromStats("crosswatch_incident_cache_hits_total", "Tenant loads served from a fresh cache", () => sources.incidents.stats().cacheHits);
  fromStats("crosswatch_incident_refreshes_total", "Tenant refreshes that went upstream (full and delta)", () => sources.incidents.stats().refreshes);
  fromStats("crosswatch_incident_refresh_failures_total", "Tenant refreshes that failed", () => sources.incidents.stats().refreshFailures);
  fromStats("crosswatch_sync_pages_committed_total", "List pages the syncs committed to the mirror", () => sources.incidents.stats().pagesCommitted);
  fromStats("crosswatch_sync_lease_busy_total", "Syncs skipped because another replica held the tenant's lease", () => sources.incidents.stats().leaseBusy);
  const engineGauge = (name: string, help: string, read: (stats: ReturnType<SyncEngine["stats"]>) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const engine = sources.engine;
        this.set(engine ? read(engine.stats()) : 0);
      },
    });
  engineGauge("crosswatch_sync_backlog_tenants", "Tenants due for a sync that wait for a free slot (this replica's engine)", (s) => s.backlog);
  engineGauge("crosswatch_sync_running", "Syncs running in this replica", (s) => s.running);
  engineGauge("crosswatch_sync_first_loads", "Tenants whose first load is under way", (s) => s.firstLoads);
  engineGauge("crosswatch_sync_first_load_pages", "Pages read so far by the first loads under way", (s) => s.firstLoadPages);
  engineGauge("crosswatch_sync_failing_tenants", "Tenants whose last sync failed", (s) => s.failing);
  engineGauge("crosswatch_sync_lag_seconds_max", "Seconds since the least recently synced tenant was last synced", (s) => s.maxLagSeconds);
  engineGauge("crosswatch_sync_tenants", "Tenants the sync engine keeps (consented, or synced before)", (s) => s.tenants);
  new Gauge({
    name: "crosswatch_upstream_in_flight",
    help: "Upstream incident calls in flight",
    registers,
    collect() {
      this.set(sources.budget.stats().inFlight);
    },
  });
  new Gauge({
    name: "crosswatch_upstream_queued",
    help: "Upstream incident calls waiting for a concurrency slot",
    registers,
    collect() {
      this.set(sources.budget.stats().queued);
    },
  });

  return {
    registry,
    /** For `createIncidentsClients({ observe })`. */
    observeUpstream(attempt: UpstreamAttempt): void {
      const status = attempt.status === 0 ? "none" : attempt.status === 429 ? "429" : `${Math.floor(attempt.status / 100)}xx`;
      upstreamCalls.inc({ tenant: attempt.tenantId, backend: attempt.backend, operation: attempt.operation, status });
      upstreamDuration.observe({ backend: attempt.backend, operation: attempt.operation }, attempt.durationMs / 1000);
    },
    /** Counts what the incidents loader handed back. */
    observeTenantLoads(results: readonly TenantLoad[], now = Date.now()): void {
      for (const { outcome } of results) {
        if (outcome.fetchedAt) servedAge.observe((now - outcome.fetchedAt.getTime()) / 1000);
        const result = outcome.error ? "failed" : outcome.fromCache ? "cache" : "refreshed";
        tenantOutcomes.inc({ result, code: outcome.error?.code ?? "" });
      }
    },
    /** Counts a refused consent callback (`registerConsentCallback({ onRejected })`). */
    observeConsentRejection(reason: string): void {
      consentRejections.inc({ reason });
    },
    /** Times every GraphQL operation. */
    plugin(): ApolloServerPlugin<GraphQLContext> {
      return {
        async requestDidStart() {
          const end = graphqlDuration.startTimer();
          return {
            async willSendResponse({ response, operation, errors }) {
              const failed = (errors?.length ?? 0) > 0 || (response.body.kind === "single" && (response.body.singleResult.errors?.length ?? 0) > 0);
              end({ operation: operation?.operation ?? "unknown", outcome: failed ? "error" : "ok" });
            },
          };
        },
      };
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
