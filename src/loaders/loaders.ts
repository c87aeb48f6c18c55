import DataLoader from "dataloader";
import { permits, permitsEverywhere, type Caller } from "../auth/caller.js";
import { diagnoseToken, type AccessVerdict, type TokenDiagnosis } from "../auth/token-diagnostics.js";
import type { TokenProvider, TokenResource } from "../auth/token-provider.js";
import type { IncidentAlert, IncidentsBackendName } from "../defender/incident.js";
import type { IncidentService, TenantLoad } from "../incidents/incident-service.js";
import { tenantForbidden } from "../incidents/outcome.js";
import type { TenantRecord, TenantStore } from "../store/tenant-store.js";
import type { TenantOutcomeRecorder } from "./outcome-recorder.js";
import { createTokenLoader } from "./token-loader.js";

export interface LoaderServices {
  tokenProvider: TokenProvider;
  tenants: TenantStore;
  incidents: IncidentService;
  /** Remembers registered tenants' outcomes (and consent drift) in the registry; process-wide, throttled. */
  outcomes?: TenantOutcomeRecorder;
}

/**
 * A tenant's incidents load: `${tenantId}|${backend}`, or `${tenantId}|${backend}|${maxAgeMs}` when the
 * query asks for data no older than that.
 */
export type IncidentsKey = `${string}|${TokenResource}` | `${string}|${TokenResource}|${number}`;

/** An incident whose alerts a query selects while they are not loaded (`Incident.alerts`). */
export interface AlertsKey {
  tenantId: string;
  backend: IncidentsBackendName;
  incidentId: string;
  /** The version the query holds: cached alerts of an older version are not served for it. */
  lastUpdateTime: Date;
}

/** A token diagnosis, or the refusal of a tenant the caller may not see (no token was asked for). */
export type DiagnosisResult = TokenDiagnosis | { tenantId: string; backend: TokenResource; forbidden: true };

/**
 * The DataLoaders of one request, for one caller. Built fresh per request (never shared), so nothing one
 * caller's request cached is served to another; keys always include the tenant. Every loader that can
 * reach a tenant's token or incidents checks the caller's scope first, so a resolver that forgot to is
 * still refused before any token request or upstream call.
 */
export function createLoaders(
  services: LoaderServices,
  caller: Caller,
  options: { signal?: AbortSignal; deadline?: number; onTenantLoads?: (results: readonly TenantLoad[]) => void } = {},
) {
  /** Tenants whose incidents or token this request asked for (the operation log's tenant count). */
  const tenantsTouched = new Set<string>();
  /** Registry records as stored, whoever may see them: only for the scope checks below. */
  const records = new DataLoader<string, TenantRecord | undefined>(async (ids) => {
    const found = await services.tenants.getMany(ids);
    return ids.map((id) => found.get(id.toLowerCase()));
  });
  /**
   * Whether the caller may read this tenant: a registered tenant in one of its scopes, or (for token
   * diagnostics of a tenant being onboarded) an unregistered one when it reads every tenant.
   */
  const mayRead = async (tenantId: string): Promise<boolean> => {
    const record = await records.load(tenantId.toLowerCase());
    return record ? permits(caller, "read", record) : permitsEverywhere(caller, "READER");
  };
  const token = createTokenLoader(services.tokenProvider, options);
  /**
   * Token diagnoses by `${tenantId}|${backend}`. A re-check asks Entra even for a tenant whose lasting
   * failure is remembered, and then forgets the incident service's memory of it, so the next load follows
   * the re-check's answer (kept by the token provider) rather than the older one.
   */
  /**
   * For a token whose claims cannot be read: whether the tenant's incidents load (the incident service's
   * cache, else one refresh) was allowed. A registered tenant in the caller's scope only; else unknown.
   */
  const readProbe = async (tenantId: string, backend: TokenResource, recheck: boolean): Promise<AccessVerdict> => {
    const record = await records.load(tenantId.toLowerCase());
    if (!record || !permits(caller, "read", record)) return "unknown";
    // A re-check must not be answered by a remembered refusal.
    if (recheck) services.incidents.forgetFailures(record.id, backend);
    // Judged by a call made now (a delta, or the first load), not by what the mirror holds from before.
    const { outcome } = await services.incidents.loadTenant(
      { tenantId: record.id, backend },
      {
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.deadline !== undefined ? { deadline: options.deadline } : {}),
        maxAgeMs: 0,
      },
    );
    // INCOMPLETE: pages were read with this token, so reading works.
    if (outcome.ok || outcome.error?.code === "INCOMPLETE") return "allowed";
    return outcome.error?.code === "MISSING_ROLE" ? "denied" : "unknown";
  };

  const diagnoses = (recheck: boolean, probe = true) =>
    new DataLoader<`${string}|${TokenResource}`, DiagnosisResult>(async (keys) =>
      Promise.all(
        keys.map(async (key): Promise<DiagnosisResult> => {
          const [tenantId, backend] = key.split("|") as [string, TokenResource];
          if (!(await mayRead(tenantId))) return { tenantId: tenantId.toLowerCase(), backend, forbidden: true };
          tenantsTouched.add(tenantId.toLowerCase());
          const diagnosis = await diagnoseToken(services.tokenProvider, tenantId, backend, {
            ...(options.signal ? { signal: options.signal } : {}),
            ...(recheck ? { recheck } : {}),
            ...(probe ? { probe: () => readProbe(tenantId, backend, recheck) } : {}),
          });
          if (recheck) services.incidents.forgetFailures(tenantId, backend);
          // Only a registered tenant has a registry row to remember it in (diagnostics also serve onboarding).
          const record = await records.load(tenantId.toLowerCase());
          if (record) services.outcomes?.observeDiagnosis(record, diagnosis);
          return diagnosis;
        }),
      ),
    );

  return {
    tenantsTouched,
    /**
     * A tenant's incidents by `${tenantId}|${backend}`: `incidents(tenantIds:)` and `tenants { incidents }` in
     * one operation share one load (and so at most one upstream refresh) per tenant. A tenant outside the
     * caller's scope (or unregistered) gets a TENANT_FORBIDDEN outcome and no upstream call.
     */
    incidents: new DataLoader<IncidentsKey, TenantLoad>(async (keys) => {
      const parsed = keys.map((key) => {
        const [tenantId, backend, maxAge] = key.split("|") as [string, TokenResource, string | undefined];
        return { tenantId, backend, maxAgeMs: maxAge ? Number(maxAge) : undefined };
      });
      const visible = await Promise.all(
        parsed.map(async ({ tenantId }) => {
          const record = await records.load(tenantId.toLowerCase());
          return record !== undefined && permits(caller, "read", record);
        }),
      );
      const allowed = parsed.filter((_, i) => visible[i]);
      for (const { tenantId } of allowed) tenantsTouched.add(tenantId);
      const loaded =
        allowed.length > 0
          ? await services.incidents.loadTenants(allowed, {
              ...(options.signal ? { signal: options.signal } : {}),
              ...(options.deadline !== undefined ? { deadline: options.deadline } : {}),
            })
          : [];
      options.onTenantLoads?.(loaded);
      if (services.outcomes) {
        const loadedRecords = await records.loadMany(loaded.map((l) => l.tenantId));
        loaded.forEach((result, i) => {
          const record = loadedRecords[i];
          if (!record || record instanceof Error) return;
          const { outcome } = result;
          if (outcome.ok) services.outcomes!.observe(record.id, { ok: true }, record);
          else if (outcome.error) services.outcomes!.observe(record.id, { ok: false, code: outcome.error.code }, record);
        });
      }
      let next = 0;
      return parsed.map(({ tenantId }, i): TenantLoad => {
        if (visible[i]) return loaded[next++]!;
        const id = tenantId.toLowerCase();
        return {
          tenantId: id,
          usable: false,
          outcome: { tenantId: id, ok: false, fromCache: false, fetchedAt: null, durationMs: 0, complete: false, error: tenantForbidden(id) },
        };
      });
    }),
    /**
     * Alerts of incidents listed without them (Graph), by incident. One batch per tick: the keys are
     * grouped per tenant and backend, each group one `IncidentService.loadAlerts` (cached alerts cost
     * nothing; the others one single-incident read each, bounded and inside the tenant's rate budget,
     * under this request's signal and deadline). A key fails alone (its Error), never its neighbours; a
     * tenant outside the caller's scope is TENANT_FORBIDDEN with no call.
     */
    alerts: new DataLoader<AlertsKey, IncidentAlert[], string>(
      async (keys) => {
        const groups = new Map<string, number[]>();
        keys.forEach((key, i) => {
          const group = `${key.tenantId.toLowerCase()}|${key.backend}`;
          groups.set(group, [...(groups.get(group) ?? []), i]);
        });
        const results: Array<IncidentAlert[] | Error> = new Array(keys.length);
        await Promise.all(
          [...groups.values()].map(async (indexes) => {
            const first = keys[indexes[0]!]!;
            const record = await records.load(first.tenantId.toLowerCase());
            if (!record || !permits(caller, "read", record)) {
              for (const i of indexes) results[i] = new TenantForbiddenError(first.tenantId.toLowerCase());
              return;
            }
            tenantsTouched.add(record.id);
            const loaded = await services.incidents.loadAlerts(
              { tenantId: record.id, backend: first.backend },
              indexes.map((i) => ({ incidentId: keys[i]!.incidentId, lastUpdateTime: keys[i]!.lastUpdateTime })),
              options,
            );
            indexes.forEach((i, k) => (results[i] = loaded[k]!));
          }),
        );
        return results;
      },
      { cacheKeyFn: (key) => `${key.tenantId.toLowerCase()}|${key.backend}|${key.incidentId}|${key.lastUpdateTime.getTime()}` },
    ),
    token: {
      /** A tenant's token, refused (rejected) for a tenant the caller may not read. */
      async load(key: `${string}|${TokenResource}`) {
        const tenantId = key.slice(0, key.lastIndexOf("|"));
        if (!(await mayRead(tenantId))) throw new TenantForbiddenError(tenantId);
        return token.load(key);
      },
    },
    /** Registry records the caller may see, by tenant id; unknown and out-of-scope tenants alike are undefined. */
    tenant: new DataLoader<string, TenantRecord | undefined>(async (ids) => {
      const found = await records.loadMany(ids.map((id) => id.toLowerCase()));
      return found.map((record) => {
        if (record instanceof Error) throw record;
        return record && permits(caller, "read", record) ? record : undefined;
      });
    }),
    /**
     * Token diagnoses by `${tenantId}|${backend}`: one token need per tenant and backend per request. A
     * remembered lasting failure is the answer (`Tenant.token`, the update pre-check).
     */
    diagnosis: diagnoses(false),
    /** Explicit re-checks (`tokenDiagnostics`): past any remembered failure, which they then replace. */
    recheck: diagnoses(true),
    /**
     * Diagnoses that make no probe call for a token whose claims are unreadable (its access stays unknown):
     * the update pre-check, which refuses only on roles a token names — the update itself decides otherwise.
     */
    rolesOnly: diagnoses(false, false),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;

/** A tenant the request's caller may not see (or that is not registered). */
export class TenantForbiddenError extends Error {
  readonly code = "TENANT_FORBIDDEN";
  override readonly name = "TenantForbiddenError";
  constructor(readonly tenantId: string) {
    super(tenantForbidden(tenantId).message);
  }
}

/** Whether a diagnosis result is the refusal of an invisible tenant. */
export function isForbidden(result: DiagnosisResult): result is Extract<DiagnosisResult, { forbidden: true }> {
  return "forbidden" in result;
}
