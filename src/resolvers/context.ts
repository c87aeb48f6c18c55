import type { Logger } from "pino";
import type { Caller } from "../auth/caller.js";
import type { Loaders } from "../loaders/loaders.js";
import type { AuditEventInput } from "../store/audit-log.js";

/** What a resolver records of an action; the actor and request id are filled in by the context. */
export type AuditRecord = Omit<AuditEventInput, "actor" | "requestId">;

/** Per-request GraphQL context: built fresh for every operation, never shared between requests. */
export interface GraphQLContext {
  requestId: string;
  logger: Logger;
  /** Who is calling; authenticated before the operation is even parsed. */
  caller: Caller;
  /** Scoped to `caller`: tenants outside its scope are invisible through every loader. */
  loaders: Loaders;
  /** The operation's deadline: every upstream wait of this request ends by then. */
  operation: { signal: AbortSignal; deadline: number };
  /** Appends to the audit log as this caller; never throws (a failed write is logged as an error). */
  audit(record: AuditRecord): Promise<void>;
}
