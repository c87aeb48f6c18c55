import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import type { Registry } from "prom-client";

export interface MetricsServerOptions {
  registry: Registry;
  host: string;
  port: number;
  /** When set, `Authorization: Bearer <token>` is required (compared in constant time). */
  token: string | undefined;
  logger: Logger;
}

export interface MetricsServer {
  /** Listens and returns the metrics URL, e.g. `http://127.0.0.1:9464/metrics`. */
  listen(): Promise<string>;
  close(): Promise<void>;
}

/**
 * Prometheus metrics on a listener of their own, never beside the API: the series name every customer
 * tenant (upstream calls per tenant), which is for operators, not for whoever can reach `/graphql`.
 * Loopback by default; a scraper elsewhere needs METRICS_HOST and, better, METRICS_TOKEN.
 * A plain node server: one route, short timeouts, nothing else to attack.
 */
export function createMetricsServer(options: MetricsServerOptions): MetricsServer {
  const expected = options.token === undefined ? undefined : digest(options.token);
  const server: Server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, (request, response) => {
    const path = (request.url ?? "").split("?")[0];
    if (path !== "/metrics" || (request.method !== "GET" && request.method !== "HEAD")) {
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    if (expected && !authorized(request.headers.authorization, expected)) {
      response
        .writeHead(401, { "content-type": "text/plain; charset=utf-8", "www-authenticate": 'Bearer realm="crosswatch-metrics"' })
        .end("a bearer token is required\n");
      return;
    }
    options.registry.metrics().then(
      (text) => {
        response.writeHead(200, { "content-type": options.registry.contentType });
        response.end(request.method === "HEAD" ? undefined : text);
      },
      (error: unknown) => {
        options.logger.error({ err: error }, "could not collect metrics");
        response.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("metrics unavailable\n");
      },
    );
  });
  // An idle scraper connection is not worth keeping past one scrape interval.
  server.keepAliveTimeout = 5_000;
  server.setTimeout(30_000);
  return {
    listen() {
      return new Promise<string>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: options.host, port: options.port }, () => {
          server.off("error", reject);
          const address = server.address();
          if (!address || typeof address === "string") return reject(new Error("metrics server is not listening on a TCP port"));
          const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
          resolve(`http://${host}:${address.port}/metrics`);
        });
      });
    },
    close() {
      if (!server.listening) return Promise.resolve();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/** Hashing first gives equal lengths, so the comparison takes the same time whatever was sent. */
function authorized(header: string | undefined, expected: Buffer): boolean {
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? "");
  return timingSafeEqual(digest(match?.[1] ?? ""), expected);
}
