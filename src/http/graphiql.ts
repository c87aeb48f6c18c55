import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { print } from "graphql";
import {
  ConsentLinkDocument,
  IncidentDetailDocument,
  IncidentQueueDocument,
  RegisterTenantDocument,
  ServerInfoDocument,
  TenantConsentStatusDocument,
  TenantRegistryDocument,
  TokenDiagnosticsDocument,
  UpdateIncidentDocument,
} from "../generated/graphql.js";

export interface GraphiQLOptions {
  /** The GraphQL endpoint GraphiQL posts to; a browser GET of it (Accept: text/html) gets GraphiQL too. */
  endpoint: string;
}

/** Where GraphiQL is served besides the endpoint itself, and where its files are. */
export const GRAPHIQL_PATH = "/graphiql";
const ASSETS_PATH = `${GRAPHIQL_PATH}/assets`;

/**
 * Only this origin: scripts, styles, workers and requests. Styles need 'unsafe-inline' because Monaco and
 * React set styles at run time; fonts and icons are data: URIs inside graphiql.css.
 */
export const GRAPHIQL_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy": GRAPHIQL_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** A placeholder header set: GraphiQL parses it as JSON with comments, so nothing is sent until edited. */
const HEADERS_TEMPLATE = `{
  // Credentials for this Crosswatch go here, for example:
  // "Authorization": "Bearer <access token>"
}`;

interface Tab {
  query: string;
  variables?: string;
  headers: string;
}

/** One GraphiQL tab from a generated typed document; the example variables are checked against it. */
function tab<TResult, TVariables>(document: TypedDocumentNode<TResult, TVariables>, variables?: TVariables): Tab {
  return {
    query: print(document),
    ...(variables === undefined ? {} : { variables: JSON.stringify(variables, null, 2) }),
    headers: HEADERS_TEMPLATE,
  };
}

/**
 * The example operations of operations/, through their generated documents (so the page can never show
 * an operation the schema does not accept), in the order a person uses them.
 */
export function exampleTabs(): Tab[] {
  const tenantId = "<tenant id (GUID) from TenantRegistry or IncidentQueue>";
  const incidentId = "<incident id from IncidentQueue>";
  return [
    tab(IncidentQueueDocument, {
      first: 20,
      orderBy: { field: "LAST_UPDATE_TIME", direction: "DESC" },
      filter: { status: ["ACTIVE", "IN_PROGRESS"] },
    }),
    tab(IncidentDetailDocument, { tenantId, incidentId }),
    tab(UpdateIncidentDocument, {
      tenantId,
      incidentId,
      input: { status: "IN_PROGRESS", assignedTo: "analyst@partner.example", comment: "Investigating" },
    }),
    tab(TenantRegistryDocument, { first: 50 }),
    tab(RegisterTenantDocument, {
      input: { id: "<the customer's Entra tenant id (GUID)>", displayName: "Customer name", tags: ["new"] },
    }),
    tab(ConsentLinkDocument, { tenantId }),
    tab(TenantConsentStatusDocument, { id: tenantId }),
    tab(TokenDiagnosticsDocument, { tenantIds: [tenantId] }),
    tab(ServerInfoDocument),
  ];
}

interface Asset {
  contentType: string;
  load(): Promise<Buffer>;
}

const JS = "text/javascript; charset=utf-8";
const CSS = "text/css; charset=utf-8";

/** Sets up Monaco's workers from this origin, then renders GraphiQL with the options the page carries. */
const BOOT_SCRIPT = `"use strict";
(function () {
  var options = JSON.parse(document.getElementById("crosswatch-graphiql-options").textContent);
  var workers = options.workers;
  delete options.workers;
  // GraphiQL replaces the first tab with initialQuery; a query in the URL (GraphiQL keeps the edited one
  // there) wins over the example on reload.
  if (new URL(location.href).searchParams.has("query")) {
    delete options.initialQuery;
    delete options.initialVariables;
  }
  // The bundle names no worker files: Monaco asks here for one per language, served by this origin.
  self.MonacoEnvironment = {
    getWorker: function (_moduleId, label) {
      return new Worker(workers[label] || workers.editorWorkerService, { name: label });
    },
  };
  YogaGraphiQL.renderYogaGraphiQL(document.getElementById("graphiql"), options);
})();
`;

const PAGE_STYLE = `html, body { height: 100%; margin: 0; }
#graphiql { height: 100vh; }
.crosswatch-loading { display: flex; height: 100%; align-items: center; justify-content: center; font: 1.25rem system-ui, sans-serif; }
`;

const LOGO =
  '<svg viewBox="0 0 24 24" width="28" height="28" fill="none" stroke="currentColor" stroke-width="2" aria-hidden="true">' +
  '<circle cx="12" cy="12" r="8"/><path d="M12 2v6M12 16v6M2 12h6M16 12h6"/></svg>';

/**
 * The files GraphiQL needs, all from the installed @graphql-yoga/graphiql prebuilt bundle (React, GraphiQL,
 * Monaco and its workers, styles with embedded fonts) plus the small boot script: nothing from any other host.
 */
function createAssets(): Map<string, Asset> {
  const dist = join(dirname(createRequire(import.meta.url).resolve("@graphql-yoga/graphiql/package.json")), "dist");
  const file = (path: string, contentType: string): Asset => ({ contentType, load: () => readFile(join(dist, path)) });
  const text = (body: string, contentType: string): Asset => ({ contentType, load: async () => Buffer.from(body) });
  return new Map([
    ["yoga-graphiql.umd.js", file("yoga-graphiql.umd.js", JS)],
    ["graphiql.css", file("graphiql.css", CSS)],
    ["editor.worker.js", file("monacoeditorwork/editor.worker.bundle.js", JS)],
    ["json.worker.js", file("monacoeditorwork/json.worker.bundle.js", JS)],
    ["graphql.worker.js", file("monacoeditorwork/graphql.worker..bundle.js", JS)],
    ["crosswatch-graphiql.js", text(BOOT_SCRIPT, JS)],
    ["crosswatch-graphiql.css", text(PAGE_STYLE, CSS)],
  ]);
}

/** The page: options travel as a JSON data block (not executed), so no inline script is needed. */
export function renderGraphiQLPage(endpoint: string): string {
  const tabs = exampleTabs();
  const options = {
    endpoint,
    title: "Crosswatch",
    logo: LOGO,
    defaultTabs: tabs,
    // Without these the bundle puts its welcome text into the first tab instead of the first example.
    initialQuery: tabs[0]!.query,
    initialVariables: tabs[0]!.variables,
    defaultHeaders: HEADERS_TEMPLATE,
    // Credentials typed into the header editor stay in this tab's memory, never in localStorage.
    shouldPersistHeaders: false,
    isHeadersEditorEnabled: true,
    defaultEditorToolsVisibility: "headers",
    workers: {
      editorWorkerService: `${ASSETS_PATH}/editor.worker.js`,
      json: `${ASSETS_PATH}/json.worker.js`,
      graphql: `${ASSETS_PATH}/graphql.worker.js`,
    },
  };
  // `<` escaped so no string in the options can close the data block.
  const json = JSON.stringify(options).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Crosswatch GraphiQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${ASSETS_PATH}/graphiql.css">
<link rel="stylesheet" href="${ASSETS_PATH}/crosswatch-graphiql.css">
</head>
<body>
<div id="graphiql"><div class="crosswatch-loading">Loading GraphiQL…</div></div>
<noscript>GraphiQL needs JavaScript. The GraphQL endpoint is ${endpoint}.</noscript>
<script type="application/json" id="crosswatch-graphiql-options">${json}</script>
<script src="${ASSETS_PATH}/yoga-graphiql.umd.js"></script>
<script src="${ASSETS_PATH}/crosswatch-graphiql.js"></script>
</body>
</html>
`;
}

/** True when the client wants a page rather than a GraphQL response (a browser navigating to the URL). */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  const types = accept.split(",").map((part) => part.split(";")[0]!.trim().toLowerCase());
  const html = types.indexOf("text/html");
  if (html < 0) return false;
  const json = types.findIndex((t) => t === "application/json" || t === "application/graphql-response+json");
  return json < 0 || html < json;
}

/**
 * Serves GraphiQL at `/graphiql` and to browsers opening the endpoint itself, with its files under
 * `/graphiql/assets/`. Register before the GraphQL route: the endpoint's HTML case is answered in an
 * `onRequest` hook, ahead of Apollo (whose own landing page would load from a CDN and is disabled).
 */
export function registerGraphiQL(app: FastifyInstance, options: GraphiQLOptions): void {
  const page = renderGraphiQLPage(options.endpoint);
  const assets = createAssets();
  // Files are read on first use and kept, with a gzip copy: the bundle is about 5 MB, 1.3 MB gzipped.
  const cache = new Map<string, Promise<{ raw: Buffer; gzipped: Buffer }>>();
  const gzipAsync = promisify(gzip);

  const sendPage = (reply: FastifyReply) => reply.code(200).headers(PAGE_HEADERS).send(page);

  app.addHook("onRequest", async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.method !== "GET" || request.url.split("?")[0] !== options.endpoint) return;
    if (!prefersHtml(request.headers.accept)) return;
    return sendPage(reply);
  });

  app.get(GRAPHIQL_PATH, async (_request, reply) => sendPage(reply));

  app.get<{ Params: { name: string } }>(`${ASSETS_PATH}/:name`, async (request, reply) => {
    const asset = assets.get(request.params.name);
    if (!asset) return reply.code(404).type("text/plain; charset=utf-8").send("not found");
    let entry = cache.get(request.params.name);
    if (!entry) {
      entry = asset.load().then(async (raw) => ({ raw, gzipped: await gzipAsync(raw) }));
      cache.set(request.params.name, entry);
      entry.catch(() => cache.delete(request.params.name));
    }
    const { raw, gzipped } = await entry;
    const acceptsGzip = /\bgzip\b/.test(String(request.headers["accept-encoding"] ?? ""));
    reply.headers({
      "content-type": asset.contentType,
      "cache-control": "public, max-age=3600",
      "x-content-type-options": "nosniff",
      vary: "accept-encoding",
    });
    if (acceptsGzip) reply.header("content-encoding", "gzip");
    return reply.send(acceptsGzip ? gzipped : raw);
  });
}
