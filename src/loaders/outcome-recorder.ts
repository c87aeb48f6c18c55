import type { Logger } from "pino";
import type { TokenDiagnosis } from "../auth/token-diagnostics.js";
import type { IncidentService } from "../incidents/incident-service.js";
import { toTenantError, type TenantErrorCode } from "../incidents/outcome.js";
import type { AuditEventInput } from "../store/audit-log.js";
import type { TenantRecord, TenantStore } from "../store/tenant-store.js";

/** What one path found for one registered tenant: its token and incidents worked, or the failure's public code. */
export type OutcomeReport = { ok: true } | { ok: false; code: TenantErrorCode };

/** What the registry row says now, when the caller has it at hand (the request's loaders do). */
export type KnownTenantState = Pick<TenantRecord, "lastFailureCode" | "consentState">;

/**
 * Codes that say nothing about the tenant: the caller's scope (TENANT_FORBIDDEN), one request's incident
 * id or values (NOT_FOUND, BAD_REQUEST), or this operation's own deadline (DEADLINE_EXCEEDED: the shared
 * refresh goes on; its answer is the next caller's outcome), or a first load still in progress (INCOMPLETE:
 * the pages read so far are kept and the next query continues). Neither recorded nor a success.
 */
const NOT_ABOUT_THE_TENANT: ReadonlySet<TenantErrorCode> = new Set<TenantErrorCode>([
  "TENANT_FORBIDDEN",
  "NOT_FOUND",
  "BAD_REQUEST",
  "DEADLINE_EXCEEDED",
  "INCOMPLETE",
]);

/**
 * The codes that prove consent was withdrawn: the token endpoint saying the app has no service principal
 * in the tenant (AADSTS700016 / 7000229 / 65001), or the API refusing the app's token twice (401). Not
 * MISSING_ROLE: a token was issued, so the app is still consented; it lacks an app role (the app's
 * required permissions grew, or an admin removed one role assignment). Re-consenting fixes both, but
 * calling that "revoked" would misreport what the customer's admin did — and the consent callback treats a
 * token without the roles as a GRANTED consent too.
 */
const CONSENT_LOST: ReadonlySet<TenantErrorCode> = new Set<TenantErrorCode>(["CONSENT_REQUIRED"]);

export interface OutcomeRecorderOptions {
  tenants: TenantStore;
  /** Writes an audit event (the recorder supplies a SYSTEM actor). */
  audit: (event: AuditEventInput) => Promise<void>;
  /** At most one write per tenant per code (a success counts as a code) in this window. Default 60 s. */
  windowMs?: number;
  now?: () => number;
  logger?: Logger;
}

const SYSTEM_ACTOR = { kind: "SYSTEM", id: "crosswatch", name: "Crosswatch (tenant outcome)" } as const;

/**
 * Remembers in the registry how each registered tenant's calls went (`lastFailureCode`, `lastFailureAt`,
 * `lastTokenSuccessAt`) from every path — incidents queries, `Tenant.incidents`, entity references (through
 * the incidents loader), `incident`/`updateIncident` (`withOutcomes`), token diagnostics — and the consent
 * drift they prove (GRANTED → REVOKED on CONSENT_REQUIRED, audited; REVOKED → GRANTED on a success).
 *
 * Throttled in this process: at most one store write per tenant per code per `windowMs`, and a success
 * writes only when the registry (or this process's last write) holds a failure code. With several replicas
 * each may write once per window: a few writes a minute per failing tenant, which is fine. Writes run in
 * the background (a query never waits for them); `idle()` waits for them (shutdown, tests).
 */
export class TenantOutcomeRecorder {
  private readonly windowMs: number;
  private readonly now: () => number;
  /** Per tenant: when this process last wrote each code (`ok` for a success), and the last code it wrote. */
  private readonly written = new Map<string, { at: Map<string, number>; last: string }>();
  private readonly pending = new Set<Promise<void>>();
  /** Store writes started (conditional ones included), for tests. */
  writes = 0;

  constructor(private readonly options: OutcomeRecorderOptions) {
    this.windowMs = options.windowMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  /**
   * Notes one outcome for a registered tenant; writes in the background when the throttle allows.
   * @param known the registry row as this request read it: a success on a tenant it shows clean writes nothing
   */
  observe(tenantId: string, report: OutcomeReport, known?: KnownTenantState): void {
    if (!report.ok && NOT_ABOUT_THE_TENANT.has(report.code)) return;
    const id = tenantId.toLowerCase();
    const key = report.ok ? "ok" : report.code;
    const entry = this.written.get(id);
    if (report.ok) {
      // Unknown (a single-incident call in a fresh process): one conditional write, which changes no row
      // of a clean tenant, then this process knows.
      const clean = known ? known.lastFailureCode === null && known.consentState !== "REVOKED" : entry?.last === "ok";
      if (clean) return;
    }
    const now = this.now();
    const last = entry?.at.get(key);
    if (last !== undefined && now - last < this.windowMs) return;
    const state = entry ?? { at: new Map<string, number>(), last: key };
    state.at.set(key, now);
    state.last = key;
    this.written.set(id, state);
    this.track(this.write(id, report));
  }

  /** A diagnosis's outcome: its error's code, or a success when a token was obtained. */
  observeDiagnosis(record: TenantRecord, diagnosis: TokenDiagnosis): void {
    this.observe(record.id, diagnosis.error ? { ok: false, code: diagnosis.error.code } : { ok: true }, record);
  }

  /** Forgets what this process wrote for a tenant (its consent was just granted, or it was changed). */
  forget(tenantId: string): void {
    this.written.delete(tenantId.toLowerCase());
  }

  /** Resolves once every write started so far has ended. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private track(work: Promise<void>): void {
    this.pending.add(work);
    void work.finally(() => this.pending.delete(work));
  }

  private async write(tenantId: string, report: OutcomeReport): Promise<void> {
    this.writes++;
    try {
      const result = await this.options.tenants.recordOutcome(
        tenantId,
        report.ok ? { ok: true } : { ok: false, code: report.code, consentLost: CONSENT_LOST.has(report.code) },
      );
      if (result.consent === "REVOKED") {
        this.options.logger?.warn({ tenantId, code: report.ok ? undefined : report.code }, "consent drift: a GRANTED tenant's token was refused for want of consent; now REVOKED");
        await this.options.audit({
          actor: SYSTEM_ACTOR,
          action: "consent.revoked_detected",
          tenantId,
          outcome: report.ok ? "SUCCESS" : report.code,
          detail: { from: "GRANTED", to: "REVOKED" },
        });
      } else if (result.consent === "GRANTED") {
        this.options.logger?.info({ tenantId }, "consent drift: a REVOKED tenant's token works again; now GRANTED");
        await this.options.audit({
          actor: SYSTEM_ACTOR,
          action: "consent.restored_detected",
          tenantId,
          outcome: "SUCCESS",
          detail: { from: "REVOKED", to: "GRANTED" },
        });
      }
    } catch (error) {
      // Let the next outcome try again rather than wait out the window.
      this.written.get(tenantId)?.at.delete(report.ok ? "ok" : report.code);
      this.options.logger?.warn({ err: error, tenantId }, "could not record a tenant outcome in the registry");
    }
  }
}

/**
 * The incident service as `incident` and `updateIncident` use it, reporting each single-incident call's
 * outcome for the tenant. Everything else passes through to the service unchanged (bound to it).
 */
export function withOutcomes(service: IncidentService, recorder: TenantOutcomeRecorder): IncidentService {
  const report = (tenantId: string, error?: unknown) =>
    recorder.observe(tenantId, error === undefined ? { ok: true } : { ok: false, code: toTenantError(error).code });
  /** The call, reporting its tenant's outcome: a success, or the code it failed with (rethrown). */
  const observe =
    <A extends [{ tenantId: string }, ...unknown[]], R>(call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        const result = await call(...args);
        report(args[0].tenantId);
        return result;
      } catch (error) {
        report(args[0].tenantId, error);
        throw error;
      }
    };
  const observed = {
    getIncident: observe(service.getIncident.bind(service)),
    updateIncident: observe(service.updateIncident.bind(service)),
  };
  return new Proxy(service, {
    get(target, property) {
      if (property === "getIncident" || property === "updateIncident") return observed[property];
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
