import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { DefenderDeterminationRule, EndpointName, RateLimitOptions } from "./context.js";
import { admitCaller, describeFrameworkError, rawQueryString, readJsonObject, useRawBodies, type Caller } from "./incident-http.js";
import {
  acceptedDeterminationSpellings,
  CLASSIFICATIONS,
  INCIDENT_STATUSES,
  parseClassification,
  parseDetermination,
  parseStatus,
  type Classification,
  type Determination,
  type IncidentRecord,
} from "./incident-model.js";
import { defenderIncident } from "./incident-serializers.js";
import type { IncidentChanges } from "./incidents-store.js";
import {
  evaluateFilter,
  ODataError,
  parseFilter,
  parseNonNegativeInteger,
  parseOrderBy,
  parseQueryOptions,
  pastSkipCeiling,
  sortByOrderBy,
  type FilterSchema,
  type OrderByClause,
} from "./odata.js";
import { HUNTING_DATA_WINDOW_MS, runHunt, schemaType } from "./hunting/hunting-service.js";
import { RESOURCES } from "./resources.js";
import type { SandboxServices } from "./services.js";

/**
 * The legacy Microsoft 365 Defender incidents API (reference section 1): `GET /api/incidents`,
 * `GET /api/incidents/{id}` and `PATCH /api/incidents/{id}`, OData v4, `{error:{code,message,target}}`.
 */

const METADATA = "https://api.security.microsoft.com/api/$metadata#Incidents";
const CONTENT_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";
/** The documented maximum page size (reference 1.3). */
export const DEFENDER_MAX_TOP = 100;

/** `$filter` works on these four properties only (reference 1.3). */
export const DEFENDER_FILTER_SCHEMA: FilterSchema = {
  entityName: "Incident",
  datetimeLiterals: "lenient",
  properties: {
    lastUpdateTime: { kind: "datetime" },
    createdTime: { kind: "datetime" },
    status: { kind: "enum", typeName: "IncidentStatus", members: INCIDENT_STATUSES },
    assignedTo: { kind: "string" },
  },
};

/** What `$orderby` may name, when the knob lets it through (SandboxOptions.defenderOrderBy). */
const DEFENDER_SORTABLE = ["lastUpdateTime", "createdTime"] as const;

const PATCHABLE = ["status", "assignedTo", "classification", "determination", "tags", "comment"] as const;

/** The Defender error body: `target` is a per-error tracking id. */
export function defenderError(_status: number, code: string, message: string): { error: { code: string; message: string; target: string } } {
  return { error: { code, message, target: randomUUID() } };
}

function defenderRead(record: IncidentRecord, property: string): string | null {
  switch (property) {
    case "lastUpdateTime":
      return record.lastUpdateTime;
    case "createdTime":
      return record.createdTime;
    case "status":
      return record.status;
    case "assignedTo":
      return record.assignedTo;
    default:
      return null;
  }
}

/** Registers the Defender routes under `/api` with their own error and not-found handlers. */
export function registerDefenderRoutes(app: FastifyInstance, services: SandboxServices): void {
  const { ctx, incidents } = services;

  const admit = (request: FastifyRequest, reply: FastifyReply, endpoint: EndpointName, bucket: keyof RateLimitOptions, write: boolean): Promise<Caller | undefined> => {
    void reply.header("odata-version", "4.0");
    const required = endpoint === "defender.hunt" ? RESOURCES.defender.huntRoles : write ? RESOURCES.defender.writeRoles : RESOURCES.defender.readRoles;
    return admitCaller(services, request, reply, {
      endpoint,
      bucket,
      resource: RESOURCES.defender,
      requiredRoles: required,
      unauthorizedCode: "Unauthorized",
      errorBody: defenderError,
      forbidden: (granted) =>
        defenderError(
          403,
          "Forbidden",
          `The application does not have any of the required application permissions (${required.join(", ")}) to access the resource.` +
            (granted.length > 0 ? ` Granted: ${granted.join(", ")}.` : " The token carries no roles."),
        ),
    });
  };

  const fail = (reply: FastifyReply, status: number, code: string, message: string) => reply.code(status).send(defenderError(status, code, message));
  const ok = (reply: FastifyReply, body: unknown) => reply.code(200).header("content-type", CONTENT_TYPE).send(JSON.stringify(body));

  /** Parses the `{id}` path segment: a number, else 400 (reference: ids are longs). */
  const incidentIdOf = (reply: FastifyReply, raw: string): number | undefined => {
    if (!/^\d{1,15}$/.test(raw)) {
      void fail(reply, 400, "BadRequest", `The incident id '${raw}' is not valid: incident ids are numbers.`);
      return undefined;
    }
    return Number(raw);
  };

  const entity = (record: IncidentRecord) => ({
    "@odata.context": `${METADATA}/$entity`,
    ...defenderIncident(incidents.view(record), { entitySerialization: ctx.options.entitySerialization, listItem: false }),
  });

  void app.register(
    async (scope) => {
      useRawBodies(scope);
      scope.setErrorHandler(async (error, _request, reply) => {
        const { status, message } = describeFrameworkError(error as { statusCode?: number; message: string });
        const code = status === 413 ? "InvalidRequestBody" : status >= 500 ? "InternalServerError" : "BadRequest";
        await fail(reply, status, code, message);
      });
      scope.setNotFoundHandler(async (request, reply) => {
        const path = (request.raw.url ?? "").split("?")[0]!;
        if (/^\/api\/(incidents(\/[^/]+)?|advancedhunting\/run)$/.test(path)) {
          await fail(reply, 405, "MethodNotAllowed", `The method '${request.method}' is not allowed on '${path}'.`);
          return;
        }
        await fail(reply, 404, "ResourceNotFound", `No resource matches '${path}'.`);
      });

      scope.get("/incidents", async (request, reply) => {
        const caller = await admit(request, reply, "defender.list", "defender.list", false);
        if (!caller) return reply;
        let options: Map<string, string>;
        let top: number;
        let skip: number;
        let filter: ((record: IncidentRecord) => boolean) | undefined;
        let orderBy: OrderByClause[] | undefined;
        try {
          // `$orderby` is not documented for this API (reference 1.3): refused, ignored or applied per the knob.
          const orderByHandling = ctx.options.defenderOrderBy;
          options = parseQueryOptions(rawQueryString(request), orderByHandling === "reject" ? ["$filter", "$top", "$skip"] : ["$filter", "$top", "$skip", "$orderby"]);
          top = options.has("$top") ? parseNonNegativeInteger("$top", options.get("$top")!) : ctx.options.defenderDefaultTop;
          if (top > DEFENDER_MAX_TOP) {
            return fail(reply, 400, "BadRequest", `The $top value ${top} exceeds the maximum page size of ${DEFENDER_MAX_TOP}; page with $skip.`);
          }
          skip = options.has("$skip") ? parseNonNegativeInteger("$skip", options.get("$skip")!) : 0;
          if (options.has("$filter")) {
            const tree = parseFilter(options.get("$filter")!, DEFENDER_FILTER_SCHEMA);
            filter = (record) => evaluateFilter(tree, DEFENDER_FILTER_SCHEMA, (p) => defenderRead(record, p));
          }
          if (options.has("$orderby")) {
            const asked = parseOrderBy(options.get("$orderby")!, DEFENDER_SORTABLE, "Incident");
            if (orderByHandling === "honour") orderBy = asked;
          }
        } catch (error) {
          if (error instanceof ODataError) return fail(reply, 400, "ODataError", error.message);
          throw error;
        }
        if (pastSkipCeiling(top, skip, ctx.options.skipCeiling)) {
          // The same ceiling as Graph's (SandboxOptions.skipCeiling; unconfirmed for this API), same two answers.
          if (ctx.options.skipCeilingAnswer === "empty") return ok(reply, { "@odata.context": METADATA, value: [] });
          return fail(reply, 400, "BadRequest", `The sum of $top and $skip (${top + skip}) exceeds the maximum of ${ctx.options.skipCeiling}.`);
        }
        const all = incidents.forTenant(caller.tenant.id);
        const page: IncidentRecord[] = [];
        if (orderBy) {
          const matching = filter ? all.filter(filter) : [...all];
          // Fixed-width timestamps compare as text.
          const ordered = sortByOrderBy(
            matching,
            orderBy,
            "incidentId",
            (r, property) => (property === "lastUpdateTime" ? r.lastUpdateTime : property === "createdTime" ? r.createdTime : r.incidentId),
            skip + top,
          );
          page.push(...ordered.slice(skip, skip + top));
        } else {
          // Newest first by createdTime; ids increase with createdTime, so walking backwards is that order.
          let skipped = 0;
          for (let i = all.length - 1; i >= 0 && page.length < top; i--) {
            const record = all[i]!;
            if (filter && !filter(record)) continue;
            if (skipped < skip) {
              skipped++;
              continue;
            }
            page.push(record);
          }
        }
        const body: Record<string, unknown> = {
          "@odata.context": METADATA,
          value: page.map((r) => defenderIncident(incidents.view(r), { entitySerialization: ctx.options.entitySerialization, listItem: true })),
        };
        if (ctx.options.defenderNextLink && top > 0 && page.length === top) {
          const params: string[] = [];
          if (options.has("$filter")) params.push(`$filter=${encodeURIComponent(options.get("$filter")!)}`);
          if (options.has("$orderby")) params.push(`$orderby=${encodeURIComponent(options.get("$orderby")!)}`);
          params.push(`$top=${top}`, `$skip=${skip + top}`);
          body["@odata.nextLink"] = `${ctx.baseUrl}/api/incidents?${params.join("&")}`;
        }
        return ok(reply, body);
      });

      scope.get<{ Params: { id: string } }>("/incidents/:id", async (request, reply) => {
        const caller = await admit(request, reply, "defender.get", "defender.get", false);
        if (!caller) return reply;
        const id = incidentIdOf(reply, request.params.id);
        if (id === undefined) return reply;
        const record = incidents.get(caller.tenant.id, id);
        if (!record) return fail(reply, 404, "ResourceNotFound", `Incident ${id} was not found.`);
        return ok(reply, entity(record));
      });

      scope.patch<{ Params: { id: string } }>("/incidents/:id", async (request, reply) => {
        const caller = await admit(request, reply, "defender.patch", "defender.patch", true);
        if (!caller) return reply;
        const id = incidentIdOf(reply, request.params.id);
        if (id === undefined) return reply;
        const body = readJsonObject(request);
        if (!body.ok) return fail(reply, body.reason === "content-type" ? 415 : 400, "InvalidRequestBody", body.message);
        const parsed = parsePatch(body.value);
        if ("error" in parsed) return fail(reply, 400, parsed.code, parsed.error);
        const current = incidents.get(caller.tenant.id, id);
        if (!current) return fail(reply, 404, "ResourceNotFound", `Incident ${id} was not found.`);
        const refused = classificationRuleProblem(parsed, current.classification, ctx.options.defenderDeterminationRule);
        if (refused) return fail(reply, 400, "InvalidInput", refused);
        const updated = incidents.update(caller.tenant.id, id, parsed, `API-App:${ctx.app.displayName}`)!;
        return ok(reply, entity(updated));
      });

      // Legacy advanced hunting (reference 1.12; contract notes/HUNTING-CONTRACT.md): 30 days of data, its own
      // quota (45/min, 1,500/h per tenant), and retired from 2027-02-01 (or the `legacyHuntingRetired` knob).
      scope.post("/advancedhunting/run", async (request, reply) => {
        const caller = await admit(request, reply, "defender.hunt", "defender.hunt", false);
        if (!caller) return reply;
        if (ctx.legacyHuntingRetired()) {
          // ASSUMED: the retired endpoint's real answer is undocumented; 410 with a pointer to the successor.
          return fail(reply, 410, "Gone", "The advanced hunting API has been retired (MC1220762) and no longer returns data; use Microsoft Graph runHuntingQuery (POST /security/runHuntingQuery).");
        }
        const body = readJsonObject(request);
        if (!body.ok) return fail(reply, body.reason === "content-type" ? 415 : 400, "InvalidRequestBody", body.message);
        const query = body.value.Query;
        if (typeof query !== "string" || query.trim() === "") return fail(reply, 400, "InvalidRequestBody", "Property 'Query' is required and must be a non-empty string (the name is case-sensitive).");
        const now = ctx.now();
        const started = process.hrtime.bigint();
        const outcome = runHunt(incidents, caller.tenant.id, query, { now, since: now - HUNTING_DATA_WINDOW_MS, rowLimit: ctx.hunting.rowLimit, tablesCached: ctx.options.huntingTablesCached });
        if (!outcome.ok) return fail(reply, 400, "BadRequest", outcome.error.message);
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        return reply.code(200).header("content-type", "application/json; charset=utf-8").send(
          JSON.stringify({
            Stats: {
              ExecutionTime: Number(seconds.toFixed(6)),
              resource_usage: {
                cache: { memory: { hits: 0, misses: 0, total: 0 }, disk: { hits: 0, misses: 0, total: 0 } },
                cpu: { user: "00:00:00", kernel: "00:00:00", "total cpu": "00:00:00" },
                memory: { peak_per_node: 0 },
              },
              dataset_statistics: [{ table_row_count: outcome.rows.length, table_size: 0 }],
            },
            Schema: outcome.schema.map((c) => ({ Name: c.name, Type: schemaType(c) })),
            Results: outcome.rows,
          }),
        );
      });
    },
    { prefix: "/api" },
  );
}

/**
 * Validates a PATCH body (reference 1.10): only the six documented, case-sensitive names; `tags`
 * replaces the list; every classification/determination spelling of reference 1.8 is accepted (which ones
 * the live service takes is unconfirmed), the pair then checked against the incident by
 * `classificationRuleProblem`.
 */
export function parsePatch(body: Record<string, unknown>): IncidentChanges | { error: string; code: "InvalidRequestBody" | "InvalidInput" } {
  const changes: IncidentChanges = {};
  const keys = Object.keys(body);
  if (keys.length === 0) return { code: "InvalidRequestBody", error: `The request body has no property to update; use one or more of ${PATCHABLE.join(", ")}.` };
  for (const key of keys) {
    const value = body[key];
    if (!(PATCHABLE as readonly string[]).includes(key)) {
      const near = PATCHABLE.find((p) => p.toLowerCase() === key.toLowerCase());
      return {
        code: "InvalidRequestBody",
        error: near
          ? `Unknown property '${key}': body parameter names are case-sensitive; did you mean '${near}'?`
          : `Unknown property '${key}'. Updatable properties: ${PATCHABLE.join(", ")}.`,
      };
    }
    const wrongType = (expected: string) => ({ code: "InvalidRequestBody" as const, error: `Property '${key}' must be ${expected}, got ${JSON.stringify(value)}.` });
    switch (key) {
      case "status": {
        if (typeof value !== "string") return wrongType("a string");
        const status = parseStatus(value);
        if (!status) return { code: "InvalidInput", error: `'${value}' is not a valid status. Valid values: ${INCIDENT_STATUSES.join(", ")}.` };
        changes.status = status;
        break;
      }
      case "assignedTo":
        if (value !== null && typeof value !== "string") return wrongType("a string or null");
        changes.assignedTo = value === null || value.trim() === "" ? null : value;
        break;
      case "classification": {
        if (typeof value !== "string") return wrongType("a string");
        const classification = parseClassification(value);
        if (!classification) return { code: "InvalidInput", error: `'${value}' is not a valid classification. Valid values: ${CLASSIFICATIONS.join(", ")}.` };
        changes.classification = classification;
        break;
      }
      case "determination": {
        if (typeof value !== "string") return wrongType("a string");
        const determination = parseDetermination(value);
        if (!determination) return { code: "InvalidInput", error: `'${value}' is not a valid determination. Valid values: ${acceptedDeterminationSpellings().join(", ")}.` };
        changes.determination = determination;
        break;
      }
      case "tags":
        if (!Array.isArray(value) || value.some((t) => typeof t !== "string")) return wrongType("an array of strings");
        changes.tags = value as string[];
        break;
      case "comment":
        if (typeof value !== "string") return wrongType("a string");
        if (value.trim() === "") return { code: "InvalidInput", error: "Property 'comment' must not be empty." };
        changes.comment = value;
        break;
    }
  }
  return changes;
}

type WritableClassification = Exclude<Classification, "Unknown">;

/**
 * The update page's write vocabulary (reference 1.8, corrected April 2024): the classifications a PATCH may
 * set and each one's determinations, as stored (`CompromisedUser` is the page's `CompromisedAccount`,
 * `ConfirmedUserActivity` its `ConfirmedActivity`, `InsufficientData` its `NoEnoughDataToValidate`).
 */
const WRITABLE_DETERMINATIONS: Record<WritableClassification, readonly Determination[]> = {
  TruePositive: ["MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware", "Phishing", "UnwantedSoftware", "Other"],
  InformationalExpectedActivity: ["SecurityTesting", "LineOfBusinessApplication", "ConfirmedUserActivity", "Other"],
  FalsePositive: ["Clean", "InsufficientData", "Other"],
};

/** The update page's own spelling of a stored determination, for messages. */
const WRITE_SPELLING: Partial<Record<Determination, string>> = {
  CompromisedUser: "CompromisedAccount",
  ConfirmedUserActivity: "ConfirmedActivity",
  InsufficientData: "NoEnoughDataToValidate",
};

const spelled = (values: readonly Determination[]) => values.map((d) => WRITE_SPELLING[d] ?? d).join(", ");

/**
 * Why a PATCH's classification/determination pair is refused (reference 1.8, "Corrections"), or undefined.
 * Writable classifications are TruePositive, InformationalExpectedActivity and FalsePositive. A
 * determination: with `truePositiveOnly` (the documented sentence, default) only together with
 * `classification: TruePositive` in the same body, and one of TruePositive's; with `byClassification` (the
 * page's per-classification lists) one of the sent classification's, or else of the incident's current one.
 * Which one the live service enforces is unconfirmed (reference, "Unconfirmed items" 4), and so are the
 * error texts; the code is the documented 400 `InvalidInput`.
 */
export function classificationRuleProblem(changes: IncidentChanges, current: Classification, rule: DefenderDeterminationRule): string | undefined {
  const writable = Object.keys(WRITABLE_DETERMINATIONS) as WritableClassification[];
  if (changes.classification === "Unknown") {
    return `'Unknown' is not a classification an update can set. Valid values: ${writable.join(", ")}.`;
  }
  const determination = changes.determination;
  if (determination === undefined) return undefined;
  let classification: Classification;
  if (rule === "truePositiveOnly") {
    if (changes.classification !== "TruePositive") {
      return "Property 'determination' can be set only together with classification 'TruePositive'.";
    }
    classification = "TruePositive";
  } else {
    classification = changes.classification ?? current;
    if (classification === "Unknown") return "Property 'determination' needs a classification: set one in the same request.";
  }
  const allowed = WRITABLE_DETERMINATIONS[classification];
  if (!allowed.includes(determination)) {
    return `'${WRITE_SPELLING[determination] ?? determination}' is not a determination of classification '${classification}'. Valid values: ${spelled(allowed)}.`;
  }
  return undefined;
}
