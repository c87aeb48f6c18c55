import { createHash } from "node:crypto";
import {
  CLASSIFICATIONS,
  INCIDENT_STATUSES,
  SEVERITIES,
  type Classification,
  type Incident,
  type IncidentStatus,
  type Severity,
} from "../defender/incident.js";

export const INCIDENT_ORDER_FIELDS = ["LAST_UPDATE_TIME", "CREATED_TIME", "SEVERITY"] as const;
export type IncidentOrderField = (typeof INCIDENT_ORDER_FIELDS)[number];
export const ORDER_DIRECTIONS = ["ASC", "DESC"] as const;
export type OrderDirection = (typeof ORDER_DIRECTIONS)[number];

/**
 * The order of a query. Every order is strict: after `field` (and, for SEVERITY, `lastUpdateTime` newest
 * first whatever the direction), ties go by `tenantId` then `incidentId`, both ascending — numeric ids
 * by value, before any non-numeric id.
 */
export interface IncidentOrder {
  field: IncidentOrderField;
  direction: OrderDirection;
}

/** Newest change first. */
export const DEFAULT_INCIDENT_ORDER: IncidentOrder = { field: "LAST_UPDATE_TIME", direction: "DESC" };
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;
/** Longest `filter.search`, in UTF-16 code units: part of a name or an id, never a document. */
export const MAX_SEARCH_LENGTH = 200;
/** Longest `filter.assignedTo` (an owner's UPN or name; the same bound as `updateIncident`'s). */
export const MAX_ASSIGNEE_LENGTH = 256;
/** Longest `after`: a cursor Crosswatch issued is about 150 characters. */
export const MAX_CURSOR_LENGTH = 1024;

/**
 * Which incidents a query returns; every given constraint must hold. `undefined`, `null`, `false` and
 * empty lists constrain nothing.
 * - `assignedTo`: the assignee equals it, trimmed, ignoring case. Blank (empty after trimming) or longer
 *   than MAX_ASSIGNEE_LENGTH is refused; `unassigned: true` asks for incidents with no (or a blank)
 *   assignee, and giving both is refused.
 * - Time windows are half-open: `createdAfter <= createdTime < createdBefore`, likewise `updated*`, so
 *   adjacent windows neither overlap nor leave gaps.
 * - `search` (trimmed; empty constrains nothing; at most MAX_SEARCH_LENGTH) matches an incident whose
 *   name contains it, ignoring case, or whose id equals it.
 */
export interface IncidentFilter {
  severity?: readonly Severity[] | null;
  status?: readonly IncidentStatus[] | null;
  classification?: readonly Classification[] | null;
  assignedTo?: string | null;
  unassigned?: boolean | null;
  createdAfter?: Date | null;
  createdBefore?: Date | null;
  updatedAfter?: Date | null;
  updatedBefore?: Date | null;
  search?: string | null;
}

export interface IncidentQuery {
  filter?: IncidentFilter | null;
  /** Default `DEFAULT_INCIDENT_ORDER`. */
  orderBy?: IncidentOrder | null;
  /** 0..MAX_PAGE_SIZE, default DEFAULT_PAGE_SIZE. */
  first?: number | null;
  /** A cursor of an earlier page of the same query: the page holds what sorts strictly after it. */
  after?: string | null;
  /**
   * What the query spans besides its filter and order, as the caller names it (e.g. the GraphQL field and
   * its tenant selection). Cursors carry a fingerprint of scope, filter and order, and a query accepts
   * only its own. Default "".
   */
  scope?: string | null;
}

/**
 * A query whose every argument was checked (by `parseIncidentQuery`, before any tenant is loaded): what
 * `pageIncidents` runs. Opaque outside this module.
 */
export interface ParsedIncidentQuery {
  readonly order: IncidentOrder;
  readonly first: number;
  readonly filter: CompiledFilter | undefined;
  readonly afterKey: SortKey | undefined;
  /** Fingerprint of scope, filter and order that every cursor of this query carries. */
  readonly binding: string;
}

/** One tenant's incidents as the service loaded them. */
export interface LoadedTenantIncidents {
  tenantId: string;
  /** Treated as immutable: sort orders are memoised per array. */
  incidents: readonly Incident[];
}

export interface IncidentEdge {
  cursor: string;
  incident: Incident;
}

/** A Relay-style page over the merged incidents of many tenants. */
export interface IncidentPage {
  edges: IncidentEdge[];
  /** Incidents matching the filter, in all pages. */
  totalCount: number;
  hasNextPage: boolean;
  /** True when matching incidents sort at or before `after`. */
  hasPreviousPage: boolean;
  startCursor: string | null;
  endCursor: string | null;
}

/** A query argument Crosswatch cannot use; the GraphQL layer turns it into BAD_USER_INPUT on `field`. */
export class QueryInputError extends Error {
  override readonly name = "QueryInputError";
  readonly code = "INVALID_INPUT" as const;
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One page of the incidents of many tenants, merged into one order.
 *
 * Cost: each tenant's incidents are sorted once per order and array (memoised on the array, which the
 * service replaces whenever a tenant's incidents change). A query finds each tenant's start by binary
 * search and k-way merges only the `first + 1` incidents it needs. A filter runs once over a tenant's
 * incidents per array version and remembers the matching positions (a few filters per array), so paging
 * through one filter costs O(tenants · log n + first · log tenants) per page after the first. No query
 * sorts all N incidents. (Measured on 1,000 × 1,000: ~10 ms a page once warm; ~0.4 s for the first query
 * of an order over new data, ~0.1–0.25 s for the first page of a new filter.)
 *
 * Cursors are keysets (see `encodeCursor`): a page after a cursor holds every matching incident that
 * sorts strictly after the incident the cursor was made from, as it was then — so paging stays correct
 * while incidents change, appear or disappear (an incident whose sort key changed meanwhile may be seen
 * twice or not at all, like in any keyset paging).
 *
 * @throws QueryInputError as `parseIncidentQuery` does
 */
export function queryIncidents(tenants: readonly LoadedTenantIncidents[], query: IncidentQuery = {}): IncidentPage {
  return pageIncidents(tenants, parseIncidentQuery(query));
}

/**
 * Checks every argument of a query and compiles it, touching no incident: the order, `first`, the filter
 * (enum values, dates, string bounds, `assignedTo` against `unassigned`) and `after`, which must be a
 * cursor this server issued for the same scope, filter and order. Callers parse first and load tenants
 * after, so a refused query costs no token or upstream call.
 *
 * @throws QueryInputError naming the argument at fault (`first`, `after`, `filter.search`, …); the
 *   message never repeats the value
 */
export function parseIncidentQuery(query: IncidentQuery = {}): ParsedIncidentQuery {
  const order = validateOrder(query.orderBy);
  const first = validateFirst(query.first);
  const filter = compileFilter(query.filter ?? undefined);
  const binding = bindingOf(query.scope ?? "", filter, order);
  const afterKey = query.after !== undefined && query.after !== null ? decodeCursor(query.after, order, binding) : undefined;
  return { order, first, filter, afterKey, binding };
}

/** One page of a parsed query over the tenants' incidents (see `queryIncidents`). Never throws for input. */
export function pageIncidents(tenants: readonly LoadedTenantIncidents[], query: ParsedIncidentQuery): IncidentPage {
  const { order, first, filter, afterKey, binding } = query;
  const desc = order.direction === "DESC";

  const streams: Stream[] = [];
  const seen = new Set<string>();
  let totalCount = 0;
  let hasPreviousPage = false;
  for (const tenant of tenants) {
    if (tenant.incidents.length === 0 || seen.has(tenant.tenantId)) continue;
    seen.add(tenant.tenantId);
    const items = sortedIncidents(tenant.incidents, order);
    const matches = filter ? matchingPositions(items, filter) : undefined;
    const size = matches ? matches.length : items.length;
    totalCount += size;
    // The matching incidents are a subsequence of `items`, so the cursor's place in `items` is theirs too.
    const start = afterKey ? upperBound(items, afterKey, order.field, desc) : 0;
    const position = matches ? lowerBoundOf(matches, start) : start;
    if (position > 0) hasPreviousPage = true;
    if (position < size) {
      const next = items[matches ? matches[position]! : position]!;
      streams.push({ items, matches, size, position, key: sortKey(next, order.field) });
    }
  }

  const heap = new StreamHeap(streams, order.field, desc);
  const edges: IncidentEdge[] = [];
  while (edges.length < first && heap.size > 0) {
    const incident = heap.pop();
    edges.push({ cursor: encodeCursor(incident, order, binding), incident });
  }
  return {
    edges,
    totalCount,
    hasNextPage: heap.size > 0,
    hasPreviousPage,
    startCursor: edges[0]?.cursor ?? null,
    endCursor: edges[edges.length - 1]?.cursor ?? null,
  };
}

// ---------------------------------------------------------------------------------------------------
// Sort keys and the order

/** Where an incident sorts: primary value, secondary value (SEVERITY only), then the tie-break. */
export interface SortKey {
  primary: number;
  secondary: number;
  tenantId: string;
  incidentId: string;
}

export const SEVERITY_RANK = new Map<string, number>(SEVERITIES.map((s, i) => [s, i]));
/** An unreadable time sorts as the earliest possible one rather than breaking the order (NaN compares false). */
const EARLIEST = -8.64e15;

/** An incident time as the order compares it (epoch ms; an unreadable one as the earliest). */
export function time(date: Date): number {
  const ms = date instanceof Date ? date.getTime() : Number.NaN;
  return Number.isNaN(ms) ? EARLIEST : ms;
}

function sortKey(incident: Incident, field: IncidentOrderField): SortKey {
  switch (field) {
    case "LAST_UPDATE_TIME":
      return { primary: time(incident.lastUpdateTime), secondary: 0, tenantId: incident.tenantId, incidentId: incident.incidentId };
    case "CREATED_TIME":
      return { primary: time(incident.createdTime), secondary: 0, tenantId: incident.tenantId, incidentId: incident.incidentId };
    case "SEVERITY":
      return {
        primary: SEVERITY_RANK.get(incident.severity) ?? 0,
        secondary: time(incident.lastUpdateTime),
        tenantId: incident.tenantId,
        incidentId: incident.incidentId,
      };
    default:
      return unreachable(field);
  }
}

/** Negative when `a` comes first. Only `primary` follows the direction. */
function compareKeys(a: SortKey, b: SortKey, desc: boolean): number {
  if (a.primary !== b.primary) return (a.primary < b.primary) !== desc ? -1 : 1;
  if (a.secondary !== b.secondary) return a.secondary > b.secondary ? -1 : 1;
  if (a.tenantId !== b.tenantId) return a.tenantId < b.tenantId ? -1 : 1;
  return compareIds(a.incidentId, b.incidentId);
}

const DIGITS = /^\d+$/;

/**
 * A string whose code-unit order is `compareIds`' order of incident ids (for SQL, COLLATE "C"): numeric
 * ids as "0", their length in three digits, the digits; others as "1" and the id.
 */
export function idKey(id: string): string {
  return DIGITS.test(id) ? `0${String(id.length).padStart(3, "0")}${id}` : `1${id}`;
}

/**
 * Incident ids: numeric ones (the legacy API's) by value — by length, then digit by digit, which needs
 * no number parsing and stays exact past 2^53 — all before non-numeric ones, which go by code unit.
 * A strict total order on distinct strings.
 */
export function compareIds(a: string, b: string): number {
  if (a === b) return 0;
  const aNumeric = DIGITS.test(a);
  const bNumeric = DIGITS.test(b);
  if (aNumeric !== bNumeric) return aNumeric ? -1 : 1;
  if (aNumeric && a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : 1;
}

/** Per incidents array, its copies sorted by each order asked for so far. */
const sortedCache = new WeakMap<readonly Incident[], Map<string, readonly Incident[]>>();

function sortedIncidents(incidents: readonly Incident[], order: IncidentOrder): readonly Incident[] {
  let byOrder = sortedCache.get(incidents);
  if (!byOrder) {
    byOrder = new Map();
    sortedCache.set(incidents, byOrder);
  }
  const name = `${order.field}:${order.direction}`;
  let sorted = byOrder.get(name);
  if (!sorted) {
    const desc = order.direction === "DESC";
    const keyed = incidents.map((incident) => ({ incident, key: sortKey(incident, order.field) }));
    keyed.sort((a, b) => compareKeys(a.key, b.key, desc));
    sorted = Object.freeze(keyed.map((k) => k.incident));
    byOrder.set(name, sorted);
  }
  return sorted;
}

/** The index of the first incident sorting strictly after `key`. */
function upperBound(sorted: readonly Incident[], key: SortKey, field: IncidentOrderField, desc: boolean): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareKeys(sortKey(sorted[middle]!, field), key, desc) <= 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** The index of the first value in ascending `values` that is at least `value`. */
function lowerBoundOf(values: Uint32Array, value: number): number {
  let low = 0;
  let high = values.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (values[middle]! < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Filters remembered per sorted array: paging through one filter evaluates it once per data version. */
const MAX_FILTERS_PER_ARRAY = 8;
const matchCache = new WeakMap<readonly Incident[], Map<string, Uint32Array>>();

/** The positions in `items` of the incidents the filter accepts, memoised per array and filter (LRU). */
function matchingPositions(items: readonly Incident[], filter: CompiledFilter): Uint32Array {
  let byFilter = matchCache.get(items);
  if (!byFilter) {
    byFilter = new Map();
    matchCache.set(items, byFilter);
  }
  let matches = byFilter.get(filter.key);
  if (matches) {
    byFilter.delete(filter.key);
  } else {
    const all = new Uint32Array(items.length);
    let n = 0;
    for (let i = 0; i < items.length; i++) if (filter.accepts(items[i]!)) all[n++] = i;
    matches = all.slice(0, n);
    if (byFilter.size >= MAX_FILTERS_PER_ARRAY) byFilter.delete(byFilter.keys().next().value!);
  }
  byFilter.set(filter.key, matches);
  return matches;
}

// ---------------------------------------------------------------------------------------------------
// k-way merge

interface Stream {
  /** A tenant's incidents in the query's order. */
  items: readonly Incident[];
  /** With a filter: the positions in `items` that match it, ascending. */
  matches: Uint32Array | undefined;
  /** Length of `matches`, else of `items`. */
  size: number;
  /** The next one, as an index into `matches`, else into `items`. */
  position: number;
  /** Key of the next one. */
  key: SortKey;
}

function current(stream: Stream): Incident {
  return stream.items[stream.matches ? stream.matches[stream.position]! : stream.position]!;
}

/** A binary min-heap of per-tenant sorted streams, ordered by each stream's next incident. */
class StreamHeap {
  private readonly heap: Stream[];

  constructor(
    streams: Stream[],
    private readonly field: IncidentOrderField,
    private readonly desc: boolean,
  ) {
    this.heap = streams;
    for (let i = (streams.length >>> 1) - 1; i >= 0; i--) this.down(i);
  }

  get size(): number {
    return this.heap.length;
  }

  /** The next incident in the merged order. Only called while `size > 0`. */
  pop(): Incident {
    const top = this.heap[0]!;
    const incident = current(top);
    top.position++;
    if (top.position < top.size) {
      top.key = sortKey(current(top), this.field);
    } else {
      const last = this.heap.pop()!;
      if (this.heap.length === 0) return incident;
      this.heap[0] = last;
    }
    this.down(0);
    return incident;
  }

  private down(index: number): void {
    const heap = this.heap;
    const n = heap.length;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= n) return;
      const right = left + 1;
      let smallest = left;
      if (right < n && compareKeys(heap[right]!.key, heap[left]!.key, this.desc) < 0) smallest = right;
      if (compareKeys(heap[smallest]!.key, heap[index]!.key, this.desc) >= 0) return;
      [heap[index], heap[smallest]] = [heap[smallest]!, heap[index]!];
      index = smallest;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Cursors

/** Bumped whenever the cursor's content or the order it encodes changes; older cursors are refused. */
const CURSOR_VERSION = "i2";

/**
 * The fingerprint cursors carry: the query's scope, its canonical filter and its order, hashed (SHA-256,
 * first 96 bits). Equal queries written differently (lists reordered, search in other case) share it.
 * Not a signature: a cursor is a position, not a permission, and the caller's scope is checked anyway.
 */
function bindingOf(scope: string, filter: CompiledFilter | undefined, order: IncidentOrder): string {
  return createHash("sha256")
    .update(JSON.stringify([scope, filter?.key ?? null, order.field, order.direction]))
    .digest("base64url")
    .slice(0, 16);
}

/**
 * A cursor: base64url of the JSON array
 * `[version, field, direction, [sort values…], tenantId, incidentId, binding]`, where the sort values are
 * the time in epoch ms (LAST_UPDATE_TIME, CREATED_TIME) or the severity name and `lastUpdateTime` ms
 * (SEVERITY), and `binding` is the fingerprint of the query that issued it (`bindingOf`). Opaque to
 * clients; it names the incident it was made from and that incident's key as it was, and is only good for
 * the same query (scope, filter and `orderBy`).
 */
export function encodeCursor(incident: Incident, order: IncidentOrder, binding: string): string {
  const key = sortKey(incident, order.field);
  const values = order.field === "SEVERITY" ? [incident.severity, key.secondary] : [key.primary];
  return Buffer.from(JSON.stringify([CURSOR_VERSION, order.field, order.direction, values, key.tenantId, key.incidentId, binding])).toString(
    "base64url",
  );
}

function decodeCursor(cursor: string, order: IncidentOrder, binding: string): SortKey {
  const invalid = (why: string) => new QueryInputError("after", `after is not a cursor of this query: ${why}`);
  if (typeof cursor !== "string" || cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw invalid("not a cursor Crosswatch issued");
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid("not a cursor Crosswatch issued");
  }
  if (!Array.isArray(value) || value.length !== 7 || value[0] !== CURSOR_VERSION) throw invalid("not a cursor Crosswatch issued (or an outdated one)");
  const [, field, direction, values, tenantId, incidentId, issuedFor] = value as unknown[];
  if (field !== order.field || direction !== order.direction) {
    const known = (INCIDENT_ORDER_FIELDS as readonly unknown[]).includes(field) && (ORDER_DIRECTIONS as readonly unknown[]).includes(direction);
    throw invalid(known ? `it belongs to orderBy ${String(field)} ${String(direction)}, not ${order.field} ${order.direction}` : "not a cursor Crosswatch issued");
  }
  if (issuedFor !== binding) throw invalid("it belongs to another filter, tenant selection or field");
  if (typeof tenantId !== "string" || tenantId === "" || typeof incidentId !== "string" || incidentId === "" || !Array.isArray(values)) {
    throw invalid("not a cursor Crosswatch issued");
  }
  const finite = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
  if (order.field === "SEVERITY") {
    const rank = typeof values[0] === "string" ? SEVERITY_RANK.get(values[0]) : undefined;
    if (values.length !== 2 || rank === undefined || !finite(values[1])) throw invalid("not a cursor Crosswatch issued");
    return { primary: rank, secondary: values[1], tenantId, incidentId };
  }
  if (values.length !== 1 || !finite(values[0])) throw invalid("not a cursor Crosswatch issued");
  return { primary: values[0], secondary: 0, tenantId, incidentId };
}

// ---------------------------------------------------------------------------------------------------
// Validation and the filter

function validateOrder(orderBy: IncidentOrder | null | undefined): IncidentOrder {
  if (orderBy === undefined || orderBy === null) return DEFAULT_INCIDENT_ORDER;
  const field = orderBy.field ?? DEFAULT_INCIDENT_ORDER.field;
  const direction = orderBy.direction ?? DEFAULT_INCIDENT_ORDER.direction;
  if (!(INCIDENT_ORDER_FIELDS as readonly string[]).includes(field)) throw new QueryInputError("orderBy.field", `orderBy.field must be one of ${INCIDENT_ORDER_FIELDS.join(", ")}`);
  if (!(ORDER_DIRECTIONS as readonly string[]).includes(direction)) {
    throw new QueryInputError("orderBy.direction", `orderBy.direction must be ${ORDER_DIRECTIONS.join(" or ")}`);
  }
  return { field, direction };
}

function validateFirst(first: number | null | undefined): number {
  if (first === undefined || first === null) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(first) || first < 0 || first > MAX_PAGE_SIZE) {
    throw new QueryInputError("first", `first must be an integer from 0 to ${MAX_PAGE_SIZE}`);
  }
  return first;
}

function enumSet<T extends string>(values: readonly T[] | null | undefined, allowed: readonly T[], field: string): ReadonlySet<string> | undefined {
  if (values === undefined || values === null || values.length === 0) return undefined;
  for (const value of values) {
    if (!allowed.includes(value)) throw new QueryInputError(field, `${field} takes only ${allowed.join(", ")}`);
  }
  return new Set(values);
}

function validDate(value: Date | null | undefined, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new QueryInputError(field, `${field} is not a valid date-time`);
  return value.getTime();
}

/** A validated filter: a canonical key (equal filters, equal keys), its test, and its values for SQL. */
export interface CompiledFilter {
  key: string;
  accepts: (incident: Incident) => boolean;
  spec: FilterSpec;
}

/**
 * A checked filter's constraints as values (the mirror turns them into SQL): only what is constrained.
 * `assignee` is trimmed and lower case; `search` lower case; times epoch ms, half-open windows.
 */
export interface FilterSpec {
  severities?: readonly string[];
  statuses?: readonly string[];
  classifications?: readonly string[];
  assignee?: string;
  unassigned?: boolean;
  createdAfter?: number;
  createdBefore?: number;
  updatedAfter?: number;
  updatedBefore?: number;
  search?: string;
}

/** The filter as one function, checking only what is constrained; undefined when nothing is. */
function compileFilter(filter: IncidentFilter | undefined): CompiledFilter | undefined {
  if (!filter) return undefined;
  const checks: ((incident: Incident) => boolean)[] = [];
  const key: unknown[] = [];
  const spec: FilterSpec = {};

  const severities = enumSet(filter.severity, SEVERITIES, "filter.severity");
  if (severities) checks.push((i) => severities.has(i.severity));
  const statuses = enumSet(filter.status, INCIDENT_STATUSES, "filter.status");
  if (statuses) checks.push((i) => statuses.has(i.status));
  const classifications = enumSet(filter.classification, CLASSIFICATIONS, "filter.classification");
  if (classifications) checks.push((i) => classifications.has(i.classification));
  key.push(...[severities, statuses, classifications].map((set) => (set ? [...set].sort() : null)));
  if (severities) spec.severities = [...severities];
  if (statuses) spec.statuses = [...statuses];
  if (classifications) spec.classifications = [...classifications];

  const assignee = filter.assignedTo;
  if (assignee !== undefined && assignee !== null) {
    if (typeof assignee !== "string" || assignee.length > MAX_ASSIGNEE_LENGTH) {
      throw new QueryInputError("filter.assignedTo", `filter.assignedTo is at most ${MAX_ASSIGNEE_LENGTH} characters`);
    }
    if (filter.unassigned === true) throw new QueryInputError("filter.unassigned", "give filter.assignedTo or filter.unassigned, not both");
    const wanted = assignee.trim().toLowerCase();
    if (wanted === "") throw new QueryInputError("filter.assignedTo", "filter.assignedTo must not be blank; use unassigned: true");
    checks.push((i) => i.assignedTo !== null && i.assignedTo.trim().toLowerCase() === wanted);
    key.push(["owner", wanted]);
    spec.assignee = wanted;
  } else if (filter.unassigned === true) {
    checks.push((i) => i.assignedTo === null || i.assignedTo.trim() === "");
    key.push(["unassigned"]);
    spec.unassigned = true;
  } else {
    key.push(null);
  }

  const createdAfter = validDate(filter.createdAfter, "filter.createdAfter");
  if (createdAfter !== undefined) checks.push((i) => i.createdTime.getTime() >= createdAfter);
  const createdBefore = validDate(filter.createdBefore, "filter.createdBefore");
  if (createdBefore !== undefined) checks.push((i) => i.createdTime.getTime() < createdBefore);
  const updatedAfter = validDate(filter.updatedAfter, "filter.updatedAfter");
  if (updatedAfter !== undefined) checks.push((i) => i.lastUpdateTime.getTime() >= updatedAfter);
  const updatedBefore = validDate(filter.updatedBefore, "filter.updatedBefore");
  if (updatedBefore !== undefined) checks.push((i) => i.lastUpdateTime.getTime() < updatedBefore);
  key.push(...[createdAfter, createdBefore, updatedAfter, updatedBefore].map((ms) => ms ?? null));
  if (createdAfter !== undefined) spec.createdAfter = createdAfter;
  if (createdBefore !== undefined) spec.createdBefore = createdBefore;
  if (updatedAfter !== undefined) spec.updatedAfter = updatedAfter;
  if (updatedBefore !== undefined) spec.updatedBefore = updatedBefore;

  const rawSearch = filter.search ?? "";
  if (typeof rawSearch !== "string" || rawSearch.length > MAX_SEARCH_LENGTH) {
    throw new QueryInputError("filter.search", `filter.search is at most ${MAX_SEARCH_LENGTH} characters`);
  }
  const search = rawSearch.trim().toLowerCase();
  if (search !== "") {
    // Plain substring matching on lower-cased text: no regular expression is ever built from user text.
    checks.push((i) => i.name.toLowerCase().includes(search) || (i.incidentId.length === search.length && i.incidentId.toLowerCase() === search));
    key.push(search);
    spec.search = search;
  } else {
    key.push(null);
  }

  if (checks.length === 0) return undefined;
  const accepts =
    checks.length === 1
      ? checks[0]!
      : (incident: Incident) => {
          for (const check of checks) if (!check(incident)) return false;
          return true;
        };
  return { key: JSON.stringify(key), accepts, spec };
}

function unreachable(value: never): never {
  throw new Error(`unreachable case: ${JSON.stringify(value)}`);
}
