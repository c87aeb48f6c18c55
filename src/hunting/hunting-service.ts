import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { TenantError } from "../incidents/outcome.js";
import type { HuntingBackendName, HuntingClient, HuntingColumn } from "./hunting-client.js";
import { toHuntingTenantError } from "./hunting-errors.js";

/** Longest KQL query accepted, in UTF-16 code units. */
export const MAX_HUNTING_QUERY_LENGTH = 10_000;
/** Largest `first`, and the default. */
export const MAX_HUNTING_PAGE_SIZE = 1000;
export const DEFAULT_HUNTING_PAGE_SIZE = 100;
/**
 * Longest `timespan`: advanced hunting keeps 30 days of data (documented for the legacy API, which also
 * takes no timespan and always searches them; Graph's default window is the same 30 days).
 */
export const MAX_HUNTING_TIMESPAN_MS = 30 * 86_400_000;
/** Longest `after` accepted; the cursors issued are about 60 characters. */
export const MAX_HUNTING_CURSOR_LENGTH = 256;
/** The column every merged row starts with. */
export const TENANT_ID_COLUMN = "tenantId";
/** A column whose type differs between tenants. */
export const MIXED_TYPE = "Dynamic";

/** An argument of `huntingQuery` that is refused before any tenant is loaded. */
export class HuntingInputError extends Error {
  override readonly name = "HuntingInputError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** The arguments of a hunt, checked: what the service runs and the cursor binds to. */
export interface ParsedHunt {
  query: string;
  /** Canonical ISO-8601 duration as given (upper-case); undefined: the service's default window. */
  timespan: string | undefined;
  first: number;
  /** Rows before the page (decoded `after`), 0 without it. */
  offset: number;
  /** Fingerprint of the tenant selection, query and timespan that every cursor of this hunt carries. */
  binding: string;
}

/**
 * Checks `huntingQuery`'s arguments without touching the registry or any tenant: the query non-blank
 * and at most MAX_HUNTING_QUERY_LENGTH; the timespan an ISO-8601 duration above zero and at most 30 days;
 * `first` 0..MAX_HUNTING_PAGE_SIZE; `after` a cursor issued for the same selection, query and timespan.
 *
 * @throws HuntingInputError
 */
export function parseHunt(args: {
  query: string;
  timespan?: string | null | undefined;
  first?: number | null | undefined;
  after?: string | null | undefined;
  /** The tenant selection in canonical form (`parseTenantSelection(...).scope`). */
  scope: string;
}): ParsedHunt {
  const { query } = args;
  if (typeof query !== "string" || query.trim() === "") throw new HuntingInputError("query", "query must not be blank");
  if (query.length > MAX_HUNTING_QUERY_LENGTH) {
    throw new HuntingInputError("query", `query is at most ${MAX_HUNTING_QUERY_LENGTH.toLocaleString("en-US")} characters`);
  }
  let timespan: string | undefined;
  if (args.timespan !== undefined && args.timespan !== null) {
    const ms = durationMs(args.timespan);
    if (ms === undefined || ms <= 0) throw new HuntingInputError("timespan", "timespan must be an ISO-8601 duration such as P1D, PT12H or P7DT12H");
    if (ms > MAX_HUNTING_TIMESPAN_MS) throw new HuntingInputError("timespan", "timespan is at most P30D: advanced hunting keeps 30 days of data");
    timespan = args.timespan.trim().toUpperCase();
  }
  const first = args.first ?? DEFAULT_HUNTING_PAGE_SIZE;
  if (!Number.isInteger(first) || first < 0 || first > MAX_HUNTING_PAGE_SIZE) {
    throw new HuntingInputError("first", `first must be from 0 to ${MAX_HUNTING_PAGE_SIZE}`);
  }
  const binding = createHash("sha256").update(JSON.stringify([args.scope, query, timespan ?? null])).digest("base64url").slice(0, 16);
  const offset = args.after !== undefined && args.after !== null ? decodeHuntingCursor(args.after, binding) : 0;
  return { query, timespan, first, offset, binding };
}

/** An ISO-8601 duration (`PnW`, `PnDTnHnMnS`, fractions of seconds) in ms; undefined when it is not one. Years and months are refused (not a fixed length). */
export function durationMs(value: string): number | undefined {
  if (value.length > 64) return undefined;
  const match = /^P(?:(\d{1,6})W)?(?:(\d{1,6})D)?(?:T(?:(\d{1,7})H)?(?:(\d{1,9})M)?(?:(\d{1,10}(?:\.\d{1,9})?)S)?)?$/i.exec(value.trim());
  if (!match || value.trim().toUpperCase() === "P" || /T$/i.test(value.trim())) return undefined;
  const [, w, d, h, m, s] = match;
  if ([w, d, h, m, s].every((x) => x === undefined)) return undefined;
  return ((Number(w ?? 0) * 7 + Number(d ?? 0)) * 24 * 3600 + Number(h ?? 0) * 3600 + Number(m ?? 0) * 60 + Number(s ?? 0)) * 1000;
}

const CURSOR_VERSION = "h1";

/** A cursor: base64url of `[version, offset, binding]` — the position after row `offset - 1` of the merged rows. */
export function encodeHuntingCursor(offset: number, binding: string): string {
  return Buffer.from(JSON.stringify([CURSOR_VERSION, offset, binding])).toString("base64url");
}

function decodeHuntingCursor(cursor: string, binding: string): number {
  const invalid = (why: string) => new HuntingInputError("after", `after is not a cursor of this hunt: ${why}`);
  if (cursor.length === 0 || cursor.length > MAX_HUNTING_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid("not a cursor Crosswatch issued");
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid("not a cursor Crosswatch issued");
  }
  if (!Array.isArray(value) || value.length !== 3 || value[0] !== CURSOR_VERSION || !Number.isSafeInteger(value[1]) || (value[1] as number) < 1) {
    throw invalid("not a cursor Crosswatch issued (or an outdated one)");
  }
  if (value[2] !== binding) throw invalid("it belongs to another query, timespan or tenant selection");
  return value[1] as number;
}

/** How one tenant's hunt went (the GraphQL `HuntingTenantOutcome`). */
export interface HuntingTenantOutcome {
  tenantId: string;
  ok: boolean;
  backend: HuntingBackendName;
  /** Rows the tenant returned (0 on failure). */
  rowCount: number;
  /** The service cut the tenant's answer at the row limit: more rows matched. */
  truncated: boolean;
  durationMs: number;
  error?: TenantError;
}

/** One tenant to hunt in, and where. */
export interface HuntTarget {
  tenantId: string;
  backend: HuntingBackendName;
}

/** One tenant's rows: how many the service returned, and the first of them (those a page can reach). */
export interface TenantRows {
  tenantId: string;
  columns: readonly HuntingColumn[];
  /** The first rows of the tenant's answer, in the service's order (all of them, or at least a page's reach). */
  rows: readonly Record<string, unknown>[];
  /** How many rows the tenant answered; default `rows.length`. */
  rowCount?: number;
}

/** The merged table: the union of the tenants' schemas and every row, addressed without copying. */
export interface MergedHunt {
  columns: HuntingColumn[];
  totalCount: number;
  /** Row `index` of the merged table (0-based) with `tenantId` first; undefined past the end. */
  row(index: number): Record<string, unknown> | undefined;
}

/**
 * Merges tenants' answers into one table: `tenantId` (String) first, then every other column in the order
 * first seen (tenants in the order given); a column whose type differs between tenants is `Dynamic`. A
 * tenant's own column named `tenantId` is shadowed by ours. Rows follow tenant order, then the service's
 * order within a tenant; they are materialised (with `tenantId` added) only when a page asks for them.
 */
export function mergeHunts(tenants: readonly TenantRows[]): MergedHunt {
  const types = new Map<string, string>();
  for (const tenant of tenants) {
    for (const column of tenant.columns) {
      if (column.name === TENANT_ID_COLUMN) continue;
      const known = types.get(column.name);
      if (known === undefined) types.set(column.name, column.type);
      else if (known !== column.type) types.set(column.name, MIXED_TYPE);
    }
  }
  const columns = [{ name: TENANT_ID_COLUMN, type: "String" }, ...[...types].map(([name, type]) => ({ name, type }))];
  const starts: number[] = [];
  let totalCount = 0;
  for (const tenant of tenants) {
    starts.push(totalCount);
    totalCount += tenant.rowCount ?? tenant.rows.length;
  }
  return {
    columns,
    totalCount,
    row(index) {
      if (!Number.isInteger(index) || index < 0 || index >= totalCount) return undefined;
      // Binary search for the tenant whose range holds `index`.
      let low = 0;
      let high = tenants.length - 1;
      while (low < high) {
        const mid = (low + high + 1) >> 1;
        if (starts[mid]! <= index) low = mid;
        else high = mid - 1;
      }
      const tenant = tenants[low]!;
      const row = tenant.rows[index - starts[low]!];
      return row === undefined ? undefined : withTenantFirst(tenant.tenantId, row);
    },
  };
}

function withTenantFirst(tenantId: string, row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { [TENANT_ID_COLUMN]: tenantId };
  for (const [key, value] of Object.entries(row)) if (key !== TENANT_ID_COLUMN) out[key] = value;
  return out;
}

export interface HuntingPage {
  columns: HuntingColumn[];
  edges: { cursor: string; node: Record<string, unknown> }[];
  totalCount: number;
  hasNextPage: boolean;
  hasPreviousPage: boolean;
  startCursor: string | null;
  endCursor: string | null;
}

/** The page of a merged hunt after `offset`, `first` rows long; cursors carry the hunt's binding. */
export function pageHunt(merged: MergedHunt, hunt: Pick<ParsedHunt, "first" | "offset" | "binding">): HuntingPage {
  const edges: HuntingPage["edges"] = [];
  const end = Math.min(merged.totalCount, hunt.offset + hunt.first);
  for (let i = hunt.offset; i < end; i++) edges.push({ cursor: encodeHuntingCursor(i + 1, hunt.binding), node: merged.row(i)! });
  return {
    columns: merged.columns,
    edges,
    totalCount: merged.totalCount,
    hasNextPage: end < merged.totalCount,
    hasPreviousPage: hunt.offset > 0,
    startCursor: edges[0]?.cursor ?? null,
    endCursor: edges.at(-1)?.cursor ?? null,
  };
}

export interface HuntingServiceOptions {
  client: Pick<HuntingClient, "run">;
  logger?: Logger;
  /** Clock for durations, ms. */
  now?: () => number;
}

export interface HuntResult {
  page: HuntingPage;
  outcomes: HuntingTenantOutcome[];
}

/**
 * Runs one hunt in many tenants at once: every tenant in parallel, within the rate budgets (the client's
 * `defender.hunt` / `graph.hunt` buckets and the process's concurrency cap) and the operation's deadline.
 * A tenant that fails never fails the hunt: its outcome says why. Nothing is cached: every call runs the
 * hunt again, a page with `after` included (rows keep tenant order and the service's order, so pages line
 * up while the data does not change). The query text is never logged; log lines carry the hunt's binding.
 */
export class HuntingService {
  private readonly client: Pick<HuntingClient, "run">;
  private readonly logger: Logger | undefined;
  private readonly now: () => number;

  constructor(options: HuntingServiceOptions) {
    this.client = options.client;
    this.logger = options.logger?.child({ component: "hunting" });
    this.now = options.now ?? performance.now.bind(performance);
  }

  /**
   * Hunts in `targets` (ordered by tenant id for a stable merge); `refused` tenants (unknown or outside the
   * caller's scope) get TENANT_FORBIDDEN outcomes and no call.
   */
  async hunt(
    targets: readonly HuntTarget[],
    hunt: ParsedHunt,
    operation: { signal?: AbortSignal; deadline?: number },
    refused: readonly { tenantId: string; backend: HuntingBackendName; error: TenantError }[] = [],
  ): Promise<HuntResult> {
    const ordered = [...targets].sort((a, b) => (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0));
    const settled = await Promise.all(ordered.map((target) => this.one(target, hunt, operation)));
    const merged = mergeHunts(settled.flatMap((s) => (s.kept ? [s.kept] : [])));
    const outcomes = [
      ...settled.map((s) => s.outcome),
      ...refused.map((r) => ({ tenantId: r.tenantId, ok: false, backend: r.backend, rowCount: 0, truncated: false, durationMs: 0, error: r.error })),
    ];
    this.logger?.info(
      {
        hunt: hunt.binding,
        tenants: outcomes.length,
        failed: outcomes.filter((o) => !o.ok).map((o) => ({ tenantId: o.tenantId, code: o.error?.code })),
        truncated: outcomes.filter((o) => o.truncated).length,
        rows: merged.totalCount,
      },
      "hunt ran",
    );
    return { page: pageHunt(merged, hunt), outcomes };
  }

  private async one(
    target: HuntTarget,
    hunt: ParsedHunt,
    operation: { signal?: AbortSignal; deadline?: number },
  ): Promise<{ outcome: HuntingTenantOutcome; kept?: TenantRows }> {
    const started = this.now();
    try {
      const answer = await this.client.run(target.tenantId, target.backend, hunt.query, {
        ...(hunt.timespan ? { timespan: hunt.timespan } : {}),
        ...(operation.signal ? { signal: operation.signal } : {}),
        ...(operation.deadline !== undefined ? { deadline: operation.deadline } : {}),
      });
      // Merged rows keep tenant order, so a row of the requested page is never further into its tenant's answer
      // than the page's end: only those rows are kept while the other tenants answer, the rest of the parsed
      // answer is garbage at once (memory per tenant bounded by the page's reach, not by the answer).
      const kept: TenantRows = {
        tenantId: target.tenantId,
        columns: answer.columns,
        rows: answer.rows.length > hunt.offset + hunt.first ? answer.rows.slice(0, hunt.offset + hunt.first) : answer.rows,
        rowCount: answer.rows.length,
      };
      return {
        kept,
        outcome: {
          tenantId: target.tenantId,
          ok: true,
          backend: target.backend,
          rowCount: answer.rows.length,
          truncated: answer.truncated,
          durationMs: Math.round(this.now() - started),
        },
      };
    } catch (error) {
      return {
        outcome: {
          tenantId: target.tenantId,
          ok: false,
          backend: target.backend,
          rowCount: 0,
          truncated: false,
          durationMs: Math.round(this.now() - started),
          error: toHuntingTenantError(error, target.backend, { tenantId: target.tenantId, logger: this.logger }),
        },
      };
    }
  }
}
