import { UpstreamError } from "./backend-client.js";
import type {
  Classification,
  Determination,
  Incident,
  IncidentComment,
  IncidentPatch,
  IncidentsBackendName,
  IncidentStatus,
  Severity,
} from "./incident.js";

/**
 * Tolerant readers shared by the two mappers. Upstream JSON is read field by field: missing keys and
 * nulls become null or empty lists, numbers and strings are coerced where that is harmless, unknown enum
 * members become UNKNOWN. What cannot be mapped honestly (an item that is not an object, an incident
 * without an id or any timestamp, a list that is not a list) throws `ShapeError`, which the clients turn
 * into UPSTREAM_BAD_RESPONSE for that tenant.
 */

/** The upstream JSON does not have the shape a mapper needs. `path` locates the offending value. */
export class ShapeError extends Error {
  override readonly name = "ShapeError";
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

export type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function expectObject(value: unknown, path: string): JsonObject {
  if (!isObject(value)) throw new ShapeError(path, `expected an object, got ${describeType(value)}`);
  return value;
}

export function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}

/** A string field; numbers and booleans as their text; anything else (or empty) null. */
export function text(o: JsonObject, key: string): string | null {
  const value = o[key];
  if (typeof value === "string") return value === "" ? null : value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return null;
}

/** An integer field, also from a numeric string (Graph prints some longs as strings). */
export function integer(o: JsonObject, key: string): number | null {
  const value = o[key];
  if (typeof value === "number" && Number.isFinite(value)) return Math.trunc(value);
  if (typeof value === "string" && /^-?\d{1,15}$/.test(value.trim())) return Number(value.trim());
  return null;
}

/** A timestamp field; unparseable or missing → null. */
export function time(o: JsonObject, key: string): Date | null {
  const value = o[key];
  return typeof value === "string" ? (parseUpstreamTime(value) ?? null) : null;
}

/** A list of strings; null or missing → []. Numbers become their text; other items are a shape error. */
export function strings(o: JsonObject, key: string, path: string): string[] {
  const value = o[key];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new ShapeError(`${path}.${key}`, `expected an array, got ${describeType(value)}`);
  return value.map((item, i) => {
    if (typeof item === "string") return item;
    if (typeof item === "number") return String(item);
    throw new ShapeError(`${path}.${key}[${i}]`, `expected a string, got ${describeType(item)}`);
  });
}

/** A list of objects; null or missing → []; anything that is not an object is a shape error. */
export function objects(o: JsonObject, key: string, path: string): JsonObject[] {
  const value = o[key];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new ShapeError(`${path}.${key}`, `expected an array, got ${describeType(value)}`);
  return value.map((item, i) => expectObject(item, `${path}.${key}[${i}]`));
}

const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})$/i;

/**
 * Parses the services' DateTimeOffsets: UTC `Z` (or an offset), 0 to 7 (or more) fractional digits,
 * truncated to milliseconds — `Date.parse` is not specified for more than 3 digits.
 */
export function parseUpstreamTime(value: string): Date | undefined {
  const m = TIMESTAMP.exec(value.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s = "0", frac = "", zone = "Z"] = m;
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12 || day < 1 || day > 31 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return undefined;
  let offsetMinutes = 0;
  if (zone.toUpperCase() !== "Z") {
    const digits = zone.replace(":", "");
    offsetMinutes = (digits.startsWith("-") ? -1 : 1) * (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
  }
  const ms = Number((frac + "000").slice(0, 3));
  const utc = Date.UTC(Number(y), month - 1, day, Number(h), Number(mi), Number(s), ms) - offsetMinutes * 60_000;
  if (new Date(Date.UTC(Number(y), month - 1, day)).getUTCDate() !== day) return undefined;
  return new Date(utc);
}

/** Enum lookups ignore case and punctuation: `UnSpecified`, `unspecified`, `in_progress` all match. */
export function enumKey(value: unknown): string | undefined {
  return typeof value === "string" ? value.toLowerCase().replace(/[^a-z0-9]/g, "") : undefined;
}

const SEVERITY_BY_KEY: Record<string, Severity> = {
  unspecified: "UNKNOWN",
  unknown: "UNKNOWN",
  informational: "INFORMATIONAL",
  low: "LOW",
  medium: "MEDIUM",
  high: "HIGH",
};

const STATUS_BY_KEY: Record<string, IncidentStatus> = {
  active: "ACTIVE",
  inprogress: "IN_PROGRESS",
  resolved: "RESOLVED",
  redirected: "REDIRECTED",
  awaitingaction: "AWAITING_ACTION",
};

const CLASSIFICATION_BY_KEY: Record<string, Classification> = {
  unknown: "UNKNOWN",
  falsepositive: "FALSE_POSITIVE",
  truepositive: "TRUE_POSITIVE",
  informationalexpectedactivity: "INFORMATIONAL_EXPECTED_ACTIVITY",
};

/**
 * Every determination spelling of reference 1.8 and 2.3. Graph's `unknown` is the legacy `NotAvailable`
 * (nothing determined yet; the sandbox prints one as the other), so both read NOT_AVAILABLE and a tenant
 * does not change value when it moves between backends. `unknownFutureValue` and anything unrecognised
 * read UNKNOWN.
 */
const DETERMINATION_BY_KEY: Record<string, Determination> = {
  notavailable: "NOT_AVAILABLE",
  unknown: "NOT_AVAILABLE",
  apt: "APT",
  malware: "MALWARE",
  securitypersonnel: "SECURITY_PERSONNEL",
  securitytesting: "SECURITY_TESTING",
  unwantedsoftware: "UNWANTED_SOFTWARE",
  other: "OTHER",
  multistagedattack: "MULTI_STAGED_ATTACK",
  compromisedaccount: "COMPROMISED_ACCOUNT",
  compromiseduser: "COMPROMISED_ACCOUNT",
  phishing: "PHISHING",
  malicioususeractivity: "MALICIOUS_USER_ACTIVITY",
  notmalicious: "NOT_MALICIOUS",
  clean: "NOT_MALICIOUS",
  notenoughdatatovalidate: "NOT_ENOUGH_DATA_TO_VALIDATE",
  noenoughdatatovalidate: "NOT_ENOUGH_DATA_TO_VALIDATE",
  insufficientdata: "NOT_ENOUGH_DATA_TO_VALIDATE",
  confirmeduseractivity: "CONFIRMED_USER_ACTIVITY",
  confirmedactivity: "CONFIRMED_USER_ACTIVITY",
  lineofbusinessapplication: "LINE_OF_BUSINESS_APPLICATION",
};

function lookup<T>(table: Record<string, T>, value: unknown, fallback: T): T {
  const key = enumKey(value);
  return key !== undefined && Object.hasOwn(table, key) ? table[key]! : fallback;
}

export const readSeverity = (value: unknown): Severity => lookup(SEVERITY_BY_KEY, value, "UNKNOWN");
export const readStatus = (value: unknown): IncidentStatus => lookup(STATUS_BY_KEY, value, "UNKNOWN");
export const readClassification = (value: unknown): Classification => lookup(CLASSIFICATION_BY_KEY, value, "UNKNOWN");
export const readDetermination = (value: unknown): Determination => lookup(DETERMINATION_BY_KEY, value, "UNKNOWN");

/**
 * `assignedTo` as a person reads it: empty and the literal `Unassigned` (seen in a captured legacy PATCH
 * answer) mean nobody.
 */
export function readAssignee(o: JsonObject, key: string): string | null {
  const value = text(o, key);
  if (value === null) return null;
  const trimmed = value.trim();
  return trimmed === "" || trimmed.toLowerCase() === "unassigned" ? null : value;
}

/** A comment of either backend: `{comment, createdBy|createdByDisplayName, createdTime|createdDateTime}`. */
export function readComment(o: JsonObject): IncidentComment | undefined {
  const comment = text(o, "comment");
  if (comment === null) return undefined;
  return {
    comment,
    createdBy: text(o, "createdBy") ?? text(o, "createdByDisplayName"),
    createdTime: time(o, "createdTime") ?? time(o, "createdDateTime") ?? time(o, "createTime"),
  };
}

/**
 * Every scalar field of an entity or evidence item as strings, nested objects flattened one level with
 * dotted names (`userAccount.accountName`), lists of scalars comma-joined. `skip` names fields carried
 * elsewhere.
 */
export function scalarProperties(o: JsonObject, skip: ReadonlySet<string>, prefix = ""): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(o)) {
    if (skip.has(key) || key.startsWith("@odata.") || value === null || value === undefined) continue;
    const name = prefix + key;
    if (typeof value === "string") {
      if (value !== "") out[name] = value;
    } else if (typeof value === "number" || typeof value === "boolean") {
      out[name] = String(value);
    } else if (Array.isArray(value)) {
      const scalars = value.filter((v) => typeof v === "string" || typeof v === "number" || typeof v === "boolean");
      if (scalars.length > 0 && scalars.length === value.length) out[name] = scalars.map(String).join(", ");
    } else if (isObject(value) && prefix === "") {
      Object.assign(out, scalarProperties(value, new Set(), `${name}.`));
    }
  }
  return out;
}

/** Why a patch cannot be sent, or undefined when it can. Checked before any upstream call. */
export function patchProblem(patch: IncidentPatch): string | undefined {
  const keys = (Object.keys(patch) as (keyof IncidentPatch)[]).filter((k) => patch[k] !== undefined);
  if (keys.length === 0) return "the patch changes nothing";
  if (patch.comment !== undefined && patch.comment.trim() === "") return "a comment must not be empty";
  if (patch.tags !== undefined && patch.tags.some((t) => typeof t !== "string" || t.trim() === "")) return "tags must be non-empty strings";
  if ((patch.status as string | undefined) === "UNKNOWN" || (patch.status as string | undefined) === "AWAITING_ACTION") {
    return `status ${patch.status as string} cannot be set`;
  }
  return undefined;
}

/** Throws on a `never`: the end of exhaustive switches. */
export function unreachable(value: never): never {
  throw new Error(`unreachable: ${String(value)}`);
}

/** One page of a list answer (`{ value: [...], "@odata.nextLink"? }`), the same envelope on both backends. */
export interface IncidentPage {
  incidents: Incident[];
  /** `@odata.nextLink` when the service sent one. */
  nextLink: string | undefined;
}

/** Maps a list envelope with a per-item mapper. @throws ShapeError */
export function mapIncidentPage(
  body: unknown,
  tenantId: string,
  mapItem: (raw: unknown, tenantId: string, path: string) => Incident,
): IncidentPage {
  const envelope = expectObject(body, "$");
  if (!Array.isArray(envelope.value)) throw new ShapeError("$.value", "a list answer needs a `value` array");
  const next = envelope["@odata.nextLink"];
  if (next !== undefined && next !== null && typeof next !== "string") throw new ShapeError("$.@odata.nextLink", "expected a string");
  return {
    incidents: envelope.value.map((item, i) => mapItem(item, tenantId, `$.value[${i}]`)),
    nextLink: typeof next === "string" && next !== "" ? next : undefined,
  };
}

const API_NAMES: Record<IncidentsBackendName, string> = { defender: "Defender API", graph: "Microsoft Graph" };

/** Runs a mapper over an upstream answer; a shape problem fails this tenant with UPSTREAM_BAD_RESPONSE. */
export function mapAnswer<T>(
  backend: IncidentsBackendName,
  tenantId: string,
  mapper: () => T,
  upstreamRequestId: string | undefined,
): T {
  try {
    return mapper();
  } catch (error) {
    if (error instanceof ShapeError) {
      throw new UpstreamError(
        "UPSTREAM_BAD_RESPONSE",
        `${API_NAMES[backend]} answer for tenant ${tenantId} has an unexpected shape (${error.path})`,
        { tenantId, backend, ...(upstreamRequestId ? { upstreamRequestId } : {}), bodyExcerpt: error.message.slice(0, 200) },
        { cause: error },
      );
    }
    throw error;
  }
}

/** A list that cannot be read to its end (too many pages, a next link looping back). */
export function badListing(backend: IncidentsBackendName, tenantId: string, what: string): UpstreamError {
  return new UpstreamError("UPSTREAM_BAD_RESPONSE", `${API_NAMES[backend]} list for tenant ${tenantId}: ${what}`, { tenantId, backend });
}

