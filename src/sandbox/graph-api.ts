import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { EndpointName } from "./context.js";
import { admitCaller, describeFrameworkError, rawQueryString, readJsonObject, useRawBodies, type Caller } from "./incident-http.js";
import {
  GRAPH_CLASSIFICATIONS,
  GRAPH_DETERMINATIONS,
  GRAPH_INCIDENT_STATUSES,
  GRAPH_SEVERITIES,
  graphClassification,
  graphDetermination,
  graphSeverity,
  graphStatus,
  parseGraphClassification,
  parseGraphDetermination,
  parseGraphSeverity,
  parseGraphStatus,
  SEVERITIES,
  type IncidentRecord,
} from "./incident-model.js";
import { GRAPH_INCIDENT_PROPERTIES, graphComment, graphIncident } from "./incident-serializers.js";
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
import { HUNTING_DATA_WINDOW_MS, parseIsoDuration, runHunt, schemaType } from "./hunting/hunting-service.js";
import { RESOURCES } from "./resources.js";
import type { SandboxServices } from "./services.js";

/**
 * Microsoft Graph security incidents (reference section 2): list, get, PATCH and POST comments under
 * `/v1.0/security/incidents` (and `/beta`), lowerCamel enums, `{error:{code,message,innerError}}`.
 */

const CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
const ENTITY = "microsoft.graph.security.incident";
/** Graph refuses larger pages for incidents (reference 2.2). */
export const GRAPH_MAX_TOP = 50;

/** `$filter` properties and enum members in Graph's spelling, lowest first (reference 2.2–2.3). */
export const GRAPH_FILTER_SCHEMA: FilterSchema = {
  entityName: ENTITY,
  datetimeLiterals: "strict",
  properties: {
    assignedTo: { kind: "string" },
    classification: { kind: "enum", typeName: "microsoft.graph.security.alertClassification", members: GRAPH_CLASSIFICATIONS },
    createdDateTime: { kind: "datetime" },
    // The published type's members only: `clean`, `compromisedUser`… are not constants of it.
    determination: { kind: "enum", typeName: "microsoft.graph.security.alertDetermination", members: GRAPH_DETERMINATIONS },
    lastUpdateDateTime: { kind: "datetime" },
    severity: { kind: "enum", typeName: "microsoft.graph.security.alertSeverity", members: GRAPH_SEVERITIES },
    status: { kind: "enum", typeName: "microsoft.graph.security.incidentStatus", members: GRAPH_INCIDENT_STATUSES },
  },
};

const SORTABLE = ["lastUpdateDateTime", "createdDateTime", "severity", "id"] as const;
const PATCHABLE = ["assignedTo", "classification", "determination", "status", "customTags", "description", "displayName", "resolvingComment", "severity", "summary"] as const;

function graphRead(record: IncidentRecord, property: string): string | null {
  switch (property) {
    case "assignedTo":
      return record.assignedTo;
    case "classification":
      return graphClassification(record.classification);
    case "createdDateTime":
      return record.createdTime;
    case "determination":
      return graphDetermination(record.determination);
    case "lastUpdateDateTime":
      return record.lastUpdateTime;
    case "severity":
      return graphSeverity(record.severity);
    case "status":
      return graphStatus(record.status);
    default:
      return null;
  }
}

/** An incident's sort key for one sortable property (fixed-width timestamps compare as text). */
function sortKey(record: IncidentRecord, property: string): string | number {
  switch (property) {
    case "lastUpdateDateTime":
      return record.lastUpdateTime;
    case "createdDateTime":
      return record.createdTime;
    case "severity":
      return SEVERITIES.indexOf(record.severity);
    default:
      return record.incidentId;
  }
}

/** A Graph-shaped request: its ids, echoed in headers and every error's `innerError`. */
interface GraphRequestIds {
  requestId: string;
  clientRequestId: string;
}

/** Registers Graph's incident routes under `/v1.0` and `/beta`, each with its own error handlers. */
export function registerGraphRoutes(app: FastifyInstance, services: SandboxServices): void {
  for (const version of ["v1.0", "beta"]) registerVersion(app, services, version);
}

function registerVersion(app: FastifyInstance, services: SandboxServices, version: string): void {
  const { ctx, incidents } = services;
  const metadata = `https://graph.microsoft.com/${version}/$metadata#security/incidents`;
  const ids = new WeakMap<FastifyRequest, GraphRequestIds>();

  /** Graph stamps every response with a request id and echoes the caller's client-request-id. */
  const idsOf = (request: FastifyRequest, reply: FastifyReply): GraphRequestIds => {
    let found = ids.get(request);
    if (!found) {
      const requestId = randomUUID();
      const sent = request.headers["client-request-id"];
      found = { requestId, clientRequestId: typeof sent === "string" && sent !== "" ? sent : requestId };
      ids.set(request, found);
      void reply.header("request-id", found.requestId).header("client-request-id", found.clientRequestId).header("odata-version", "4.0");
    }
    return found;
  };
  const errorBody = (request: FastifyRequest, reply: FastifyReply) => {
    const { requestId, clientRequestId } = idsOf(request, reply);
    return (_status: number, code: string, message: string, extra: Record<string, unknown> = {}) => ({
      error: {
        code,
        message,
        ...extra,
        innerError: {
          date: new Date(ctx.now()).toISOString().slice(0, 19),
          "request-id": requestId,
          "client-request-id": clientRequestId,
        },
      },
    });
  };
  const fail = (request: FastifyRequest, reply: FastifyReply, status: number, code: string, message: string, extra?: Record<string, unknown>) =>
    reply.code(status).send(errorBody(request, reply)(status, code, message, extra));
  const ok = (request: FastifyRequest, reply: FastifyReply, body: unknown) => {
    idsOf(request, reply);
    return reply.code(200).header("content-type", CONTENT_TYPE).send(JSON.stringify(body));
  };

  const admit = (request: FastifyRequest, reply: FastifyReply, endpoint: EndpointName, write: boolean): Promise<Caller | undefined> => {
    // Hunting has its own role and its own quota (SandboxOptions.rateLimits["graph.hunt"]).
    const hunt = endpoint === "graph.hunt";
    const required = hunt ? RESOURCES.graph.huntRoles : write ? RESOURCES.graph.writeRoles : RESOURCES.graph.readRoles;
    const writer = errorBody(request, reply);
    if (!request.headers.authorization) void reply.header("www-authenticate", 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"');
    return admitCaller(services, request, reply, {
      endpoint,
      bucket: hunt ? "graph.hunt" : "graph",
      resource: RESOURCES.graph,
      requiredRoles: required,
      unauthorizedCode: "InvalidAuthenticationToken",
      errorBody: (status, code, message) => writer(status, code, message),
      // Word for word the captured 403 (wazuh-documentation#7300), with this caller's roles.
      forbidden: (granted) =>
        writer(403, "Forbidden", `Missing application roles. API required roles: ${required.join(",")}, application roles: ${granted.join(",")}.`),
    });
  };

  /** Parses `$select`/`$expand` shared by list and get; returns the context suffix too. */
  const shapeOptions = (options: Map<string, string>) => {
    let expandAlerts = false;
    let select: Set<string> | undefined;
    if (options.has("$expand")) {
      const items = options.get("$expand")!.split(",").map((s) => s.trim());
      for (const item of items) {
        if (item !== "alerts") {
          throw new ODataError(`Parsing OData Select and Expand failed: Could not find a navigation property named '${item}' on type '${ENTITY}'; only 'alerts' can be expanded.`);
        }
      }
      expandAlerts = true;
    }
    if (options.has("$select")) {
      select = new Set();
      for (const raw of options.get("$select")!.split(",")) {
        const name = raw.trim();
        if (!(GRAPH_INCIDENT_PROPERTIES as readonly string[]).includes(name)) {
          throw new ODataError(`Parsing OData Select and Expand failed: Could not find a property named '${name}' on type '${ENTITY}'.`);
        }
        select.add(name);
      }
    }
    const parts = [...(select ? GRAPH_INCIDENT_PROPERTIES.filter((p) => select!.has(p)) : []), ...(expandAlerts ? ["alerts()"] : [])];
    return { expandAlerts, select, contextSuffix: parts.length > 0 ? `(${parts.join(",")})` : "" };
  };

  /** `{id}` of a Graph incident: ids are numeric strings; anything else names no incident. */
  const findIncident = (caller: Caller, raw: string): IncidentRecord | undefined =>
    /^\d{1,15}$/.test(raw) ? incidents.get(caller.tenant.id, Number(raw)) : undefined;

  void app.register(
    async (scope) => {
      useRawBodies(scope);
      scope.setErrorHandler(async (error, request, reply) => {
        const { status, message } = describeFrameworkError(error as { statusCode?: number; message: string });
        await fail(request, reply, status, status === 413 ? "RequestEntityTooLarge" : status >= 500 ? "InternalServerError" : "BadRequest", message);
      });
      scope.setNotFoundHandler(async (request, reply) => {
        const path = (request.raw.url ?? "").split("?")[0]!;
        if (new RegExp(`^/${version.replace(".", "\\.")}/security/(incidents(/[^/]+(/comments)?)?|runHuntingQuery)$`).test(path)) {
          await fail(request, reply, 405, "Request_BadRequest", `The HTTP method '${request.method}' is not supported on '${path}'.`);
          return;
        }
        await fail(request, reply, 400, "BadRequest", `Resource not found for the segment '${path.split("/").filter(Boolean).slice(1).join("/")}'.`);
      });

      scope.get("/security/incidents", async (request, reply) => {
        const caller = await admit(request, reply, "graph.list", false);
        if (!caller) return reply;
        let options: Map<string, string>;
        let top: number;
        let skip: number;
        let count = false;
        let orderBy: OrderByClause[] = [{ property: "createdDateTime", direction: "desc" }];
        let filter: ((record: IncidentRecord) => boolean) | undefined;
        let shape: ReturnType<typeof shapeOptions>;
        try {
          options = parseQueryOptions(rawQueryString(request), ["$filter", "$top", "$skip", "$orderby", "$count", "$expand", "$select"]);
          top = options.has("$top") ? parseNonNegativeInteger("$top", options.get("$top")!) : ctx.options.graphDefaultTop;
          if (top > GRAPH_MAX_TOP) {
            // Word for word what Graph answers (wazuh/wazuh#28070), code "" and an empty details list included.
            return fail(request, reply, 400, "", `The query specified in the URI is not valid. The limit of '${GRAPH_MAX_TOP}' for Top query has been exceeded. The value from the incoming request is '${top}'.`, { details: [] });
          }
          skip = options.has("$skip") ? parseNonNegativeInteger("$skip", options.get("$skip")!) : 0;
          const maxSkip = ctx.options.graphMaxSkip;
          if (maxSkip !== undefined && skip > maxSkip) {
            return fail(request, reply, 400, "", `The query specified in the URI is not valid. The limit of '${maxSkip}' for Skip query has been exceeded. The value from the incoming request is '${skip}'.`, { details: [] });
          }
          if (options.has("$count")) {
            const value = options.get("$count")!.toLowerCase();
            if (value !== "true" && value !== "false") throw new ODataError(`Invalid value '${options.get("$count")}' for $count: use true or false.`);
            count = value === "true";
          }
          if (options.has("$orderby")) {
            // Parsed (and refused when invalid) either way; applied unless the knob says Graph ignores it (unconfirmed).
            const asked = parseOrderBy(options.get("$orderby")!, SORTABLE, ENTITY);
            if (ctx.options.graphOrderBy === "honour") orderBy = asked;
          }
          if (options.has("$filter")) {
            let tree;
            try {
              tree = parseFilter(options.get("$filter")!, GRAPH_FILTER_SCHEMA);
            } catch (error) {
              if (error instanceof ODataError) throw new ODataError(`Invalid filter clause: ${error.message}`);
              throw error;
            }
            filter = (record) => evaluateFilter(tree, GRAPH_FILTER_SCHEMA, (p) => graphRead(record, p));
          }
          shape = shapeOptions(options);
        } catch (error) {
          if (error instanceof ODataError) return fail(request, reply, 400, "BadRequest", error.message);
          throw error;
        }
        if (pastSkipCeiling(top, skip, ctx.options.skipCeiling)) {
          // Deep $skip stops returning pages (SandboxOptions.skipCeiling): a 400 in Graph's shape (our
          // wording, modelled on its $top message; the real text is unconfirmed), or an empty last page.
          if (ctx.options.skipCeilingAnswer === "empty") return ok(request, reply, { "@odata.context": `${metadata}${shape.contextSuffix}`, value: [] });
          return fail(
            request,
            reply,
            400,
            "BadRequest",
            `The query specified in the URI is not valid. The sum of $top and $skip cannot exceed '${ctx.options.skipCeiling}'. The value from the incoming request is '${top + skip}'.`,
            { details: [] },
          );
        }
        // The reported failure (SandboxOptions.graphExpandFailsAbove): the expanded LIST of a large tenant
        // answers 500 every time, whatever the page or filter, while the same list without $expand works.
        const expandLimit = ctx.graphExpandFailsAbove(caller.tenant.id);
        if (shape.expandAlerts && expandLimit !== null && incidents.forTenant(caller.tenant.id).length > expandLimit) {
          return fail(request, reply, 500, "InternalServerError", "An internal server error occurred. The operation failed.");
        }
        const matching = filter ? incidents.forTenant(caller.tenant.id).filter(filter) : [...incidents.forTenant(caller.tenant.id)];
        // Stable: ties fall back to the id, in the direction of the last clause.
        const page = sortByOrderBy(matching, orderBy, "id", sortKey, skip + top).slice(skip, skip + top);
        const body: Record<string, unknown> = { "@odata.context": `${metadata}${shape.contextSuffix}` };
        if (count) body["@odata.count"] = matching.length;
        if (skip + page.length < matching.length && top > 0) {
          const params: string[] = [];
          for (const [name, value] of options) if (name !== "$skip") params.push(`${name}=${encodeURIComponent(value)}`);
          params.push(`$skip=${skip + page.length}`);
          body["@odata.nextLink"] = `${ctx.baseUrl}/${version}/security/incidents?${params.join("&")}`;
        }
        body.value = page.map((r) => graphIncident(incidents.view(r), { expandAlerts: shape.expandAlerts, select: shape.select }));
        return ok(request, reply, body);
      });

      scope.get<{ Params: { id: string } }>("/security/incidents/:id", async (request, reply) => {
        const caller = await admit(request, reply, "graph.get", false);
        if (!caller) return reply;
        let shape: ReturnType<typeof shapeOptions>;
        try {
          shape = shapeOptions(parseQueryOptions(rawQueryString(request), ["$expand", "$select"]));
        } catch (error) {
          if (error instanceof ODataError) return fail(request, reply, 400, "BadRequest", error.message);
          throw error;
        }
        const record = findIncident(caller, request.params.id);
        if (!record) return fail(request, reply, 404, "NotFound", `The incident '${request.params.id}' was not found.`);
        return ok(request, reply, {
          "@odata.context": `${metadata}${shape.contextSuffix}/$entity`,
          ...graphIncident(incidents.view(record), { expandAlerts: shape.expandAlerts, select: shape.select }),
        });
      });

      scope.patch<{ Params: { id: string } }>("/security/incidents/:id", async (request, reply) => {
        const caller = await admit(request, reply, "graph.patch", true);
        if (!caller) return reply;
        const body = readJsonObject(request);
        if (!body.ok) return fail(request, reply, body.reason === "content-type" ? 415 : 400, "BadRequest", graphBodyMessage(body.reason, body.message));
        const parsed = parseGraphPatch(body.value);
        if ("error" in parsed) return fail(request, reply, 400, "BadRequest", parsed.error);
        const record = findIncident(caller, request.params.id);
        if (!record) return fail(request, reply, 404, "NotFound", `The incident '${request.params.id}' was not found.`);
        const updated = incidents.update(caller.tenant.id, record.incidentId, parsed, `API-App:${ctx.app.displayName}`)!;
        return ok(request, reply, { "@odata.context": `${metadata}/$entity`, ...graphIncident(incidents.view(updated)) });
      });

      scope.post<{ Params: { id: string } }>("/security/incidents/:id/comments", async (request, reply) => {
        const caller = await admit(request, reply, "graph.comment", true);
        if (!caller) return reply;
        const body = readJsonObject(request);
        if (!body.ok) return fail(request, reply, body.reason === "content-type" ? 415 : 400, "BadRequest", graphBodyMessage(body.reason, body.message));
        const comment = parseGraphComment(body.value);
        if (typeof comment !== "string") return fail(request, reply, 400, "BadRequest", comment.error);
        const record = findIncident(caller, request.params.id);
        if (!record) return fail(request, reply, 404, "NotFound", `The incident '${request.params.id}' was not found.`);
        const updated = incidents.addComment(caller.tenant.id, record.incidentId, comment, `API-App:${ctx.app.displayName}`)!;
        // The documented answer: the incident's whole updated comment list.
        return ok(request, reply, {
          "@odata.context": `https://graph.microsoft.com/${version}/$metadata#security/incidents('${updated.incidentId}')/comments`,
          value: incidents.commentsOf(updated).map(graphComment),
        });
      });

      // Advanced hunting (contract: notes/HUNTING-CONTRACT.md; README "Hunting in the sandbox").
      scope.post("/security/runHuntingQuery", async (request, reply) => {
        const caller = await admit(request, reply, "graph.hunt", false);
        if (!caller) return reply;
        const body = readJsonObject(request);
        if (!body.ok) return fail(request, reply, body.reason === "content-type" ? 415 : 400, "BadRequest", graphBodyMessage(body.reason, body.message));
        const { Query: query, Timespan: timespan } = body.value;
        if (typeof query !== "string" || query.trim() === "") return fail(request, reply, 400, "BadRequest", "The parameter 'Query' is required and must be a non-empty string.");
        let windowMs = HUNTING_DATA_WINDOW_MS;
        if (timespan !== undefined && timespan !== null) {
          const parsed = typeof timespan === "string" ? parseIsoDuration(timespan) : undefined;
          if (parsed === undefined) return fail(request, reply, 400, "BadRequest", "The parameter 'Timespan' must be an ISO 8601 duration such as 'P7D' or 'PT12H'.");
          windowMs = parsed;
        }
        const now = ctx.now();
        const outcome = runHunt(incidents, caller.tenant.id, query, { now, since: now - windowMs, rowLimit: ctx.hunting.rowLimit, tablesCached: ctx.options.huntingTablesCached });
        if (!outcome.ok) return fail(request, reply, 400, "BadRequest", outcome.error.message);
        return ok(request, reply, {
          "@odata.context": `https://graph.microsoft.com/${version}/$metadata#microsoft.graph.security.huntingQueryResults`,
          schema: outcome.schema.map((c) => ({ name: c.name, type: schemaType(c) })),
          results: outcome.rows,
        });
      });
    },
    { prefix: `/${version}` },
  );
}

function graphBodyMessage(reason: string, detail: string): string {
  if (reason === "empty") return "Empty Payload. JSON content expected.";
  if (reason === "syntax") return `Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format. ${detail}`;
  return detail;
}

function unknownProperty(key: string): string {
  return `The property '${key}' does not exist on type '${ENTITY}'. Make sure to only use property names that are defined by the type or mark the type as open type.`;
}

/**
 * Validates a Graph PATCH body (reference 2.5). Enum values must be members of Graph's published types
 * (reference 2.3, "Corrections"), in any letter case (unconfirmed: whether Graph is case-sensitive here);
 * anything else — the resource page's prose names `compromisedUser`, `clean`, `insufficientData`,
 * `confirmedUserActivity`, the legacy `UnSpecified`, the `unknownFutureValue` sentinel — is a 400 in Graph's
 * error shape, as Graph answers a value its type does not have.
 */
export function parseGraphPatch(body: Record<string, unknown>): IncidentChanges | { error: string } {
  const changes: IncidentChanges = {};
  const keys = Object.keys(body).filter((k) => k !== "@odata.type");
  if (body["@odata.type"] !== undefined && !/^#?microsoft\.graph\.security\.incident$/.test(String(body["@odata.type"]))) {
    return { error: `The @odata.type '${String(body["@odata.type"])}' is not '#${ENTITY}'.` };
  }
  if (keys.length === 0) return { error: `The request body has no property to update; use one or more of ${PATCHABLE.join(", ")}.` };
  for (const key of keys) {
    const value = body[key];
    if (!(PATCHABLE as readonly string[]).includes(key)) return { error: unknownProperty(key) };
    const notString = () => ({ error: `Cannot convert the value ${JSON.stringify(value)} of property '${key}' to the expected type 'Edm.String'.` });
    const badEnum = (type: string) => ({ error: `Cannot convert the literal '${String(value)}' to the expected type '${type}'.` });
    switch (key) {
      case "assignedTo":
      case "description":
      case "resolvingComment":
      case "summary":
        if (value !== null && typeof value !== "string") return notString();
        changes[key] = value === null || (key === "assignedTo" && (value as string).trim() === "") ? null : (value as string);
        break;
      case "displayName":
        if (typeof value !== "string") return notString();
        if (value.trim() === "") return { error: "The property 'displayName' must not be empty." };
        changes.displayName = value;
        break;
      case "classification": {
        const parsed = typeof value === "string" ? parseGraphClassification(value) : undefined;
        if (!parsed) return badEnum("microsoft.graph.security.alertClassification");
        changes.classification = parsed;
        break;
      }
      case "determination": {
        const parsed = typeof value === "string" ? parseGraphDetermination(value) : undefined;
        if (!parsed) return badEnum("microsoft.graph.security.alertDetermination");
        changes.determination = parsed;
        break;
      }
      case "status": {
        const parsed = typeof value === "string" ? parseGraphStatus(value) : undefined;
        if (!parsed) return badEnum("microsoft.graph.security.incidentStatus");
        changes.status = parsed;
        break;
      }
      case "severity": {
        const parsed = typeof value === "string" ? parseGraphSeverity(value) : undefined;
        if (!parsed) return badEnum("microsoft.graph.security.alertSeverity");
        changes.severity = parsed;
        break;
      }
      case "customTags":
        if (!Array.isArray(value) || value.some((t) => typeof t !== "string")) {
          return { error: `Cannot convert the value of property 'customTags' to the expected type 'Collection(Edm.String)'.` };
        }
        changes.tags = value as string[];
        break;
    }
  }
  return changes;
}

/** Validates the comment POST body: `comment` (and an optional matching `@odata.type`). */
export function parseGraphComment(body: Record<string, unknown>): string | { error: string } {
  for (const key of Object.keys(body)) {
    if (key === "@odata.type") {
      if (!/^#?microsoft\.graph\.security\.alertComment$/.test(String(body[key]))) {
        return { error: `The @odata.type '${String(body[key])}' is not 'microsoft.graph.security.alertComment'.` };
      }
      continue;
    }
    if (key !== "comment") return { error: `The property '${key}' does not exist on type 'microsoft.graph.security.alertComment'.` };
  }
  const comment = body.comment;
  if (typeof comment !== "string" || comment.trim() === "") return { error: "The property 'comment' is required and must be a non-empty string." };
  return comment;
}
