import DataLoader from "dataloader";
import { diagnoseToken, type TokenDiagnosis } from "../auth/token-diagnostics.js";
import type { TokenProvider, TokenResource } from "../auth/token-provider.js";
import type { IncidentService, TenantIncidents } from "../incidents/incident-service.js";
import type { TenantRecord, TenantStore } from "../store/tenant-store.js";
import { createTokenLoader } from "./token-loader.js";

export interface LoaderServices {
  tokenProvider: TokenProvider;
  tenants: TenantStore;
  incidents: IncidentService;
}

/**
 * The DataLoaders of one request. Built fresh per request (never shared), so nothing one caller's request
 * cached is served to another; keys always include the tenant.
 */
export function createLoaders(services: LoaderServices, options: { signal?: AbortSignal; deadline?: number } = {}) {
  return {
    /**
     * A tenant's incidents by `${tenantId}|${backend}`: `incidents(tenantIds:)` and `tenants { incidents }` in
     * one operation share one load (and so at most one upstream refresh) per tenant.
     */
    incidents: new DataLoader<`${string}|${TokenResource}`, TenantIncidents>(async (keys) =>
      services.incidents.loadTenants(
        keys.map((key) => {
          const [tenantId, backend] = key.split("|") as [string, TokenResource];
          return { tenantId, backend };
        }),
        options,
      ),
    ),
    token: createTokenLoader(services.tokenProvider, options),
    /** Registry records by tenant id; unknown tenants resolve to undefined. */
    tenant: new DataLoader<string, TenantRecord | undefined>(async (ids) => {
      const found = await services.tenants.getMany(ids);
      return ids.map((id) => found.get(id.toLowerCase()));
    }),
    /** Token diagnoses by `${tenantId}|${backend}`: one token need per tenant and backend per request. */
    diagnosis: new DataLoader<`${string}|${TokenResource}`, TokenDiagnosis>(async (keys) =>
      Promise.all(
        keys.map((key) => {
          const [tenantId, backend] = key.split("|") as [string, TokenResource];
          return diagnoseToken(services.tokenProvider, tenantId, backend, options.signal ? { signal: options.signal } : {});
        }),
      ),
    ),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
