import type { Logger } from "pino";
import { UpstreamError } from "../defender/backend-client.js";
import { toTenantError, type TenantError } from "../incidents/outcome.js";
import { HUNTING_ROLES, type HuntingBackendName } from "./hunting-client.js";

const API: Record<HuntingBackendName, string> = {
  graph: "Microsoft Graph hunting API (runHuntingQuery)",
  defender: "legacy Defender advanced hunting API",
};

/**
 * A tenant's hunting failure in public words: the incidents mapping (`toTenantError`: codes from the one
 * table, token errors, deadline, INTERNAL), with hunting's own hints where incidents' would mislead — the
 * permission to grant, the query to fix. The message of a BAD_REQUEST is the service's own error about the
 * caller's query: returned to that caller, never logged.
 */
export function toHuntingTenantError(error: unknown, backend: HuntingBackendName, context: { tenantId?: string; logger?: Logger | undefined } = {}): TenantError {
  const base = toTenantError(error, context);
  if (!(error instanceof UpstreamError)) return base;
  switch (error.code) {
    case "MISSING_ROLE":
      return {
        ...base,
        hint: `The ${API[backend]} refused the app's token for lack of the application permission ${HUNTING_ROLES[backend]}: ask the customer's Global Administrator to open the consent link again (with hunting enabled) so it is granted.`,
      };
    case "BAD_REQUEST":
      return {
        ...base,
        hint: `The ${API[backend]} refused the query: the message is the service's own. Fix the query (the sandbox answers a documented subset of KQL) and run it again.`,
      };
    case "THROTTLED":
      return {
        ...base,
        hint: `The ${API[backend]} is throttling this tenant's hunts (call quota, or the tenant's hunting CPU for the current 15-minute cycle): wait for retryAfterSeconds, then hunt again.`,
      };
    case "UPSTREAM_TIMEOUT":
      return {
        ...base,
        hint: `The ${API[backend]} did not answer before the deadline: narrow the query (a shorter timespan, fewer rows) or try again later.`,
      };
    default:
      return base;
  }
}
