import type { CallerKind } from "../auth/caller.js";
import { StoreError } from "./errors.js";
import { decodeSeqCursor, encodeSeqCursor, pageSize, toDate } from "./rows.js";
import type { SqlClient } from "./sql.js";

export const AUDIT_ACTIONS = [
  "tenant.register",
  "tenant.update",
  "tenant.remove",
  "incident.update",
  "consent.granted",
  "consent.denied",
  "consent.rejected",
  /** A GRANTED tenant's token was refused for want of consent (actor SYSTEM): now REVOKED. */
  "consent.revoked_detected",
  /** A REVOKED tenant's token works again (actor SYSTEM): GRANTED again. */
  "consent.restored_detected",
  "key.create",
  "key.revoke",
  /** Saved hunts: detail holds the name, tags and query length, never the query text. */
  "hunt.save",
  "hunt.delete",
  "hunt.run",
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export interface AuditActor {
  kind: CallerKind;
  id: string;
  name: string;
}

export interface AuditEventInput {
  actor: AuditActor;
  action: AuditAction;
  tenantId?: string | null;
  /** What was acted on besides the tenant: an incident id, a key id. */
  target?: string | null;
  /** `SUCCESS` or the public error code the action ended with. */
  outcome: string;
  /** Small, secret-free facts (changed field names, a key's prefix). */
  detail?: Record<string, unknown>;
  requestId?: string | null;
}

export interface AuditEvent {
  id: string;
  at: Date;
  actor: AuditActor;
  action: AuditAction;
  tenantId: string | null;
  target: string | null;
  outcome: string;
  detail: Record<string, unknown>;
  requestId: string | null;
}

export interface AuditFilter {
  tenantId?: string;
  action?: AuditAction;
  actorId?: string;
  outcome?: string;
  since?: Date;
  until?: Date;
}

interface AuditRow {
  id: string;
  at: Date | string;
  actor_kind: CallerKind;
  actor_id: string;
  actor_name: string;
  action: AuditAction;
  tenant_id: string | null;
  target: string | null;
  outcome: string;
  detail: Record<string, unknown> | string;
  request_id: string | null;
}

const COLUMNS = "id::text AS id, at, actor_kind, actor_id, actor_name, action, tenant_id, target, outcome, detail, request_id";

/**
 * The append-only audit log: every mutation, consent event and key event, with who, when, which tenant,
 * what and the outcome. Listed newest first by insertion order (a sequence, so replicas on one PostgreSQL
 * interleave correctly and cursors are exact).
 */
export class AuditLog {
  constructor(private readonly db: SqlClient) {}

  async record(event: AuditEventInput): Promise<AuditEvent> {
    const rows = await this.db.query<AuditRow>(
      `INSERT INTO audit_events (actor_kind, actor_id, actor_name, action, tenant_id, target, outcome, detail, request_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9)
       RETURNING ${COLUMNS}`,
      [
        event.actor.kind,
        event.actor.id.slice(0, 256),
        event.actor.name.slice(0, 256),
        event.action,
        event.tenantId ?? null,
        event.target?.slice(0, 256) ?? null,
        event.outcome.slice(0, 64),
        JSON.stringify(event.detail ?? {}),
        event.requestId ?? null,
      ],
    );
    return toEvent(rows[0]!);
  }

  /** Events matching the filter, newest first. */
  async list(filter: AuditFilter = {}, first = 50, after?: string): Promise<{ items: AuditEvent[]; hasNextPage: boolean; cursors: string[] }> {
    const size = pageSize(first, 500);
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: (n: number) => string, value: unknown) => {
      params.push(value);
      where.push(sql(params.length));
    };
    if (filter.tenantId) add((n) => `tenant_id = $${n}`, filter.tenantId.toLowerCase());
    if (filter.action) add((n) => `action = $${n}`, filter.action);
    if (filter.actorId) add((n) => `actor_id = $${n}`, filter.actorId);
    if (filter.outcome) add((n) => `outcome = $${n}`, filter.outcome);
    if (filter.since) add((n) => `at >= $${n}`, filter.since);
    if (filter.until) add((n) => `at < $${n}`, filter.until);
    if (filter.since && filter.until && filter.since >= filter.until) {
      throw new StoreError("INVALID_INPUT", "since must be before until", { field: "since" });
    }
    if (after !== undefined) add((n) => `id < $${n}::bigint`, decodeSeqCursor("a1", after));
    params.push(size + 1);
    const rows = await this.db.query<AuditRow>(
      `SELECT ${COLUMNS} FROM audit_events ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
       ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, size);
    return { items: page.map(toEvent), hasNextPage: rows.length > size, cursors: page.map((r) => encodeSeqCursor("a1", r.id)) };
  }
}

function toEvent(row: AuditRow): AuditEvent {
  return {
    id: row.id,
    at: toDate(row.at)!,
    actor: { kind: row.actor_kind, id: row.actor_id, name: row.actor_name },
    action: row.action,
    tenantId: row.tenant_id,
    target: row.target,
    outcome: row.outcome,
    detail: typeof row.detail === "string" ? (JSON.parse(row.detail) as Record<string, unknown>) : row.detail,
    requestId: row.request_id,
  };
}
