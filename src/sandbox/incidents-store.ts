import type { SandboxContext } from "./context.js";
import {
  ACTIVITY_COMMENTS,
  ALERT_TEMPLATES,
  buildAlerts,
  buildComments,
  drawFollowOnTemplate,
  firstIncidentId,
  generateTenantIncidents,
  incidentNameFor,
  makeAlert,
  newIncident,
  tenantPools,
  type TenantPools,
} from "./incident-generator.js";
import {
  SEVERITIES,
  type AlertRecord,
  type Classification,
  type Determination,
  type IncidentComment,
  type IncidentRecord,
  type IncidentView,
  type IncidentStatus,
  type Severity,
} from "./incident-model.js";
import { Random } from "./random.js";
import type { SandboxTenant } from "./tenants.js";
import { MonotonicStamp, msOf } from "./timestamps.js";

/** One tenant's incidents once generated. */
interface TenantIncidents {
  tenant: SandboxTenant;
  pools: TenantPools;
  /** Ascending by id, which is also ascending by `createdTime`. */
  incidents: IncidentRecord[];
  byId: Map<number, IncidentRecord>;
  nextId: number;
}

/** A change to an incident, already validated and in the internal vocabulary. */
export interface IncidentChanges {
  status?: IncidentStatus;
  /** null (or "") unassigns. */
  assignedTo?: string | null;
  classification?: Classification;
  determination?: Determination;
  /** Replaces the custom tags. */
  tags?: string[];
  /** Appended to the comments. */
  comment?: string;
  displayName?: string;
  description?: string | null;
  summary?: string | null;
  resolvingComment?: string | null;
  severity?: Severity;
}

export interface IncidentStoreOptions {
  /**
   * "Now" of the generated data (Unix ms): incidents were created in the 90 days before it. Default: the
   * sandbox clock when the store is built. Fix it to compare two sandboxes' data field for field.
   */
  anchorMs?: number;
}

/**
 * The sandbox's incidents: generated per tenant on first access, changed by PATCH, comments and
 * background activity, read by both backends. Every change bumps `lastUpdateTime` on a strictly
 * increasing clock derived from the sandbox clock.
 */
export class IncidentStore {
  readonly anchorMs: number;
  private readonly byTenant = new Map<string, TenantIncidents>();
  private readonly stamp = new MonotonicStamp();
  private readonly activityRandom: Random;
  /** Incidents changed or created since the seed, per tenant (the state file keeps them whole). */
  private readonly changed = new Map<string, Set<number>>();
  /** A saved state's incidents of tenants not generated yet in this run: applied when they are. */
  private readonly restored = new Map<string, { nextId: number; records: IncidentRecord[] }>();

  constructor(readonly ctx: SandboxContext, options: IncidentStoreOptions = {}) {
    this.anchorMs = options.anchorMs ?? ctx.now();
    this.activityRandom = Random.derive(ctx.options.seed, "activity");
  }

  /** How many tenants have had their incidents generated so far. */
  get materialisedTenantCount(): number {
    return this.byTenant.size;
  }

  isMaterialised(tenantId: string): boolean {
    return this.byTenant.has(tenantId.toLowerCase());
  }

  /**
   * A tenant's incidents, oldest first (generating them on first access). The array is the store's own:
   * read it, never change it. Unknown tenants have none.
   */
  forTenant(tenantId: string): readonly IncidentRecord[] {
    return this.state(tenantId)?.incidents ?? [];
  }

  get(tenantId: string, incidentId: number): IncidentRecord | undefined {
    return this.state(tenantId)?.byId.get(incidentId);
  }

  /** An incident's comments: stored once it has changed, otherwise derived. */
  commentsOf(record: IncidentRecord): readonly IncidentComment[] {
    if (record.comments) return record.comments;
    const state = this.state(record.tenantId);
    return state ? buildComments(record, state.pools) : [];
  }

  /** An incident with its alerts and comments, ready for a serialiser. */
  view(record: IncidentRecord): IncidentView {
    return { record, alerts: this.alertsOf(record), comments: this.commentsOf(record) };
  }

  /** An incident's alerts: stored once it has changed, otherwise derived from its plan. */
  alertsOf(record: IncidentRecord): readonly AlertRecord[] {
    if (record.alerts) return record.alerts;
    const state = this.state(record.tenantId);
    return state ? buildAlerts(record, state.pools) : [];
  }

  /**
   * Applies a validated change from either API. Returns the updated incident, or undefined when the
   * tenant or incident does not exist.
   *
   * @param actor who made the change: `lastModifiedBy` and the comment author (e.g. `API-App:<name>`)
   */
  update(tenantId: string, incidentId: number, changes: IncidentChanges, actor: string): IncidentRecord | undefined {
    const record = this.get(tenantId, incidentId);
    if (!record) return undefined;
    const alerts = this.materialiseAlerts(record);
    // Derived parts depend on the fields about to change: pin them first.
    record.comments ??= buildComments(record, this.state(tenantId)!.pools);
    const now = this.stamp.next(this.ctx.now());
    if (changes.status !== undefined) record.status = changes.status;
    if (changes.assignedTo !== undefined) record.assignedTo = changes.assignedTo === "" ? null : changes.assignedTo;
    if (changes.classification !== undefined) record.classification = changes.classification;
    if (changes.determination !== undefined) record.determination = changes.determination;
    if (changes.tags !== undefined) record.tags = [...changes.tags];
    if (changes.displayName !== undefined) record.incidentName = changes.displayName;
    if (changes.description !== undefined) record.description = changes.description;
    if (changes.summary !== undefined) record.summary = changes.summary;
    if (changes.resolvingComment !== undefined) record.resolvingComment = changes.resolvingComment;
    if (changes.severity !== undefined) record.severity = changes.severity;
    if (changes.comment !== undefined) {
      // Replaced, not pushed: generated incidents share one frozen empty list.
      record.comments = [...(record.comments ?? []), { comment: changes.comment, createdBy: actor, createdTime: now }];
    }
    record.lastUpdateTime = now;
    record.lastModifiedBy = actor;
    this.noteChanged(record);
    // As captured: every alert's lastUpdatedTime moves a moment after the incident's; resolving the
    // incident resolves its alerts.
    const alertTime = this.stamp.next(this.ctx.now());
    for (const alert of alerts) {
      alert.lastUpdatedTime = alertTime;
      if (changes.status === "Resolved" && alert.status !== "Resolved") {
        alert.status = "Resolved";
        alert.resolvedTime = now;
      }
    }
    return record;
  }

  /** Appends a comment (Graph's POST …/comments); same bookkeeping as an update. */
  addComment(tenantId: string, incidentId: number, comment: string, actor: string): IncidentRecord | undefined {
    return this.update(tenantId, incidentId, { comment }, actor);
  }

  /** Creates a new Active incident now, as the correlation engine would. */
  createIncident(tenantId: string, input: { plan?: number[] } = {}): IncidentRecord | undefined {
    const state = this.state(tenantId);
    if (!state) return undefined;
    return this.create(state, this.activityRandom, input.plan);
  }

  /**
   * Simulates a busy SOC: `changes` random creations and updates (status, assignment, a new alert, a
   * comment) across random consented tenants, on the sandbox clock. A tenant is generated first if it
   * was not yet, so a change lands on top of its seeded incidents instead of being lost.
   */
  applyActivity(changes: number): { created: number; updated: number } {
    const consented = this.ctx.tenants.filter((t) => t.consent.granted);
    let created = 0;
    let updated = 0;
    if (consented.length === 0) return { created, updated };
    const rnd = this.activityRandom;
    for (let i = 0; i < changes; i++) {
      const state = this.state(rnd.pick(consented).id)!;
      const open = recentOpen(state.incidents);
      if (open.length === 0 || rnd.chance(0.35)) {
        this.create(state, rnd);
        created++;
        continue;
      }
      const record = rnd.pick(open);
      const analyst = rnd.pick(state.pools.analysts);
      const kind = rnd.weighted([["status", 3], ["assign", 2], ["alert", 2], ["comment", 2]] as const);
      switch (kind) {
        case "status": {
          const next: IncidentStatus =
            record.status === "Active" ? rnd.pick(["InProgress", "Resolved"] as const) : record.status === "InProgress" ? "Resolved" : "Active";
          this.update(state.tenant.id, record.incidentId, { status: next, ...(record.assignedTo ? {} : { assignedTo: analyst }) }, analyst);
          break;
        }
        case "assign":
          this.update(state.tenant.id, record.incidentId, { assignedTo: analyst }, analyst);
          break;
        case "comment":
          this.update(state.tenant.id, record.incidentId, { comment: rnd.pick(ACTIVITY_COMMENTS) }, analyst);
          break;
        case "alert":
          this.addAlert(state, record, rnd);
          break;
      }
      updated++;
    }
    return { created, updated };
  }

  private state(tenantId: string): TenantIncidents | undefined {
    const key = tenantId.toLowerCase();
    const existing = this.byTenant.get(key);
    if (existing) return existing;
    const tenant = this.ctx.findTenant(key);
    if (!tenant || tenant.id !== key) return undefined;
    const seed = this.ctx.options.seed;
    const pools = tenantPools(seed, tenant);
    const incidents = generateTenantIncidents(seed, tenant, pools, this.anchorMs);
    const last = incidents[incidents.length - 1];
    const state: TenantIncidents = {
      tenant,
      pools,
      incidents,
      byId: new Map(incidents.map((r) => [r.incidentId, r])),
      nextId: last ? last.incidentId + 1 : firstIncidentId(seed, tenant),
    };
    this.byTenant.set(key, state);
    this.applyRestored(state);
    return state;
  }

  /**
   * Takes a saved state's incidents (at start, before any read): each tenant's are laid over its generated
   * ones when it is first read, so a restart neither generates every tenant nor loses an edit. The stamp
   * clock moves past every saved time, so later changes still sort after them.
   */
  restore(saved: Record<string, { nextId: number; records: IncidentRecord[] }>): void {
    let latest = "";
    for (const [tenantId, entry] of Object.entries(saved)) {
      this.restored.set(tenantId.toLowerCase(), entry);
      for (const record of entry.records) if (record.lastUpdateTime > latest) latest = record.lastUpdateTime;
    }
    if (latest !== "") this.stamp.next(msOf(latest) + 1);
  }

  /** Every changed or created incident, whole, per tenant, with the next id: what the state file keeps. */
  snapshot(): Record<string, { nextId: number; records: IncidentRecord[] }> {
    const out: Record<string, { nextId: number; records: IncidentRecord[] }> = Object.fromEntries(this.restored);
    for (const [tenantId, ids] of this.changed) {
      const state = this.byTenant.get(tenantId);
      if (!state) continue;
      out[tenantId] = { nextId: state.nextId, records: [...ids].flatMap((id) => state.byId.get(id) ?? []) };
    }
    return out;
  }

  private noteChanged(record: IncidentRecord): void {
    const key = record.tenantId.toLowerCase();
    const ids = this.changed.get(key) ?? new Set<number>();
    ids.add(record.incidentId);
    this.changed.set(key, ids);
    this.ctx.onStateChange();
  }

  private applyRestored(state: TenantIncidents): void {
    const key = state.tenant.id;
    const saved = this.restored.get(key);
    if (!saved) return;
    this.restored.delete(key);
    const ids = new Set<number>();
    for (const record of saved.records) {
      ids.add(record.incidentId);
      state.byId.set(record.incidentId, record);
    }
    state.incidents = [...state.byId.values()].sort((a, b) => a.incidentId - b.incidentId);
    state.nextId = Math.max(state.nextId, saved.nextId);
    this.changed.set(key, ids);
  }

  private materialiseAlerts(record: IncidentRecord): AlertRecord[] {
    const state = this.state(record.tenantId)!;
    record.alerts ??= buildAlerts(record, state.pools);
    record.comments ??= buildComments(record, state.pools);
    return record.alerts;
  }

  private create(state: TenantIncidents, rnd: Random, plan?: number[]): IncidentRecord {
    const id = state.nextId;
    state.nextId += rnd.int(1, 3);
    const record = newIncident(rnd, state.tenant, { incidentId: id, createdTime: this.stamp.next(this.ctx.now()), ...(plan ? { plan } : {}) });
    state.incidents.push(record);
    state.byId.set(id, record);
    this.noteChanged(record);
    return record;
  }

  /** A new alert joins an open incident: it may be renamed (multi-stage) and its severity may rise. */
  private addAlert(state: TenantIncidents, record: IncidentRecord, rnd: Random): void {
    const alerts = this.materialiseAlerts(record);
    const template = drawFollowOnTemplate(rnd);
    const now = this.stamp.next(this.ctx.now());
    const severity = rnd.pick(ALERT_TEMPLATES[template]!.severities);
    alerts.push(
      makeAlert(rnd, record, state.pools, ALERT_TEMPLATES[template]!, {
        creationMs: msOf(now),
        lastUpdatedTime: now,
        severity,
        status: "New",
        who: { user: rnd.pick(state.pools.users), device: rnd.pick(state.pools.devices) },
        investigationId: ALERT_TEMPLATES[template]!.investigated ? rnd.int(1, 9000) : null,
      }),
    );
    record.plan = [...record.plan, template];
    record.incidentName = incidentNameFor(record.plan, record.spread);
    if (SEVERITIES.indexOf(severity) > SEVERITIES.indexOf(record.severity)) record.severity = severity;
    if (record.status === "Resolved") record.status = "Active";
    record.lastUpdateTime = now;
    record.lastModifiedBy = "Microsoft 365 Defender-AlertCorrelation";
    this.noteChanged(record);
  }
}

/** Activity touches the newest non-redirected incidents, as real SOC work does. */
function recentOpen(incidents: readonly IncidentRecord[]): IncidentRecord[] {
  const out: IncidentRecord[] = [];
  for (let i = incidents.length - 1; i >= 0 && out.length < 50; i--) {
    if (incidents[i]!.status !== "Redirected") out.push(incidents[i]!);
  }
  return out;
}
