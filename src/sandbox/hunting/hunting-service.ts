import type { IncidentStore } from "../incidents-store.js";
import { KqlError, parseKql, runKql, type Column, type Query, type Row } from "./kql.js";
import { HuntingTables } from "./tables.js";

/**
 * What both hunting routes share: run one query over one tenant's tables within a data window, cut at the
 * row limit, and describe a refused query. The routes only add HTTP, auth and each service's JSON shape.
 */

/** The legacy API's documented data window; also what Graph uses without a `Timespan` (ASSUMED). */
export const HUNTING_DATA_WINDOW_MS = 30 * 86_400_000;

const tablesByStore = new WeakMap<IncidentStore, HuntingTables>();

/** The hunting tables of one sandbox (one per incident store, built lazily per tenant; `capacity` on first use). */
export function huntingTablesOf(store: IncidentStore, capacity?: number): HuntingTables {
  let tables = tablesByStore.get(store);
  if (!tables) {
    tables = new HuntingTables(store, capacity);
    tablesByStore.set(store, tables);
  }
  return tables;
}

/**
 * Parsed queries by text: a hunt across many tenants sends one query to each, and ohm parses a query in a
 * few milliseconds, so each text is parsed once (the ASTs are never changed). Refusals are kept too.
 */
const parsedQueries = new Map<string, Query | KqlError>();
const PARSED_QUERY_CAPACITY = 256;

function parseCached(text: string): Query {
  let parsed = parsedQueries.get(text);
  if (!parsed) {
    try {
      parsed = parseKql(text);
    } catch (error) {
      if (!(error instanceof KqlError)) throw error;
      parsed = error;
    }
    if (parsedQueries.size >= PARSED_QUERY_CAPACITY) parsedQueries.delete(parsedQueries.keys().next().value!);
    parsedQueries.set(text, parsed);
  }
  if (parsed instanceof KqlError) throw parsed;
  return parsed;
}

export type HuntOutcome = { ok: true; schema: Column[]; rows: Row[]; truncated: boolean; sourceRows: number } | { ok: false; error: KqlError };

/**
 * Parses and runs `query` over the tenant's tables. Rows whose `Timestamp` is before `since` are not seen;
 * at most `rowLimit` rows come back (the services cut silently; `truncated` is for the caller's stats).
 */
export function runHunt(
  store: IncidentStore,
  tenantId: string,
  query: string,
  options: { now: number; since: number; rowLimit: number; tablesCached?: number },
): HuntOutcome {
  const tables = huntingTablesOf(store, options.tablesCached);
  let sourceRows = 0;
  try {
    const parsed = parseCached(query);
    const result = runKql(parsed, {
      now: options.now,
      since: options.since,
      tables: (name) => {
        const table = tables.table(tenantId, name);
        if (table) sourceRows = table.rows.length;
        return table;
      },
    });
    const truncated = result.rows.length > options.rowLimit;
    return { ok: true, schema: result.schema, rows: truncated ? result.rows.slice(0, options.rowLimit) : result.rows, truncated, sourceRows };
  } catch (error) {
    if (error instanceof KqlError) return { ok: false, error };
    throw error;
  }
}

/** Schema type names as the hunting APIs print them; timespans print as strings (`1.02:03:04`). */
export function schemaType(column: Column): string {
  return column.type === "TimeSpan" ? "String" : column.type;
}

/**
 * Parses an ISO-8601 duration (`P30D`, `PT12H`, `P1DT6H30M`, `P2W`) to ms, or undefined when it is not one.
 * Years and months are refused: their length is ambiguous (unconfirmed whether Graph accepts them).
 */
export function parseIsoDuration(text: string): number | undefined {
  const match = /^P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/i.exec(text.trim());
  if (!match || text.trim().toUpperCase() === "P" || /T$/i.test(text.trim())) return undefined;
  const [, w, d, h, m, s] = match;
  const ms = (Number(w ?? 0) * 7 * 86_400 + Number(d ?? 0) * 86_400 + Number(h ?? 0) * 3600 + Number(m ?? 0) * 60 + Number(s ?? 0)) * 1000;
  return ms > 0 ? ms : undefined;
}
