import "reflect-metadata";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { startRuntime } from "./runtime.js";

/** Entry point: read config, start (with the sandbox when no Azure app is configured), stop on signals. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`crosswatch: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  const runtime = await startRuntime(config, { logger });
  const graphqlUrl = `${runtime.url}/graphql`;
  // Where Prometheus scrapes: a listener of its own (METRICS_PORT), never the API's.
  const metricsUrl = runtime.app.metricsUrl ?? "off";
  if (runtime.sandbox) {
    logger.info(
      {
        mode: "sandbox",
        graphqlUrl,
        metricsUrl,
        sandboxUrl: runtime.sandbox.url,
        sandboxTenants: runtime.sandbox.tenants.length,
        sandboxClientId: runtime.sandbox.clientId,
      },
      `SANDBOX MODE: no Azure app configured (AZURE_CLIENT_ID unset), so Crosswatch runs against the built-in ` +
        `emulated Entra ID and Defender API at ${runtime.sandbox.url} with ${runtime.sandbox.tenants.length} ` +
        `seeded customer tenants. GraphQL: ${graphqlUrl}`,
    );
    logger.info(
      {
        tenants: runtime.sandbox.tenants
          .slice(0, 20)
          .map((t) => ({ id: t.id, name: t.displayName, ...(t.note ? { note: t.note } : {}) })),
      },
      "sandbox tenants (first 20; all at GET /_sandbox/tenants on the sandbox URL)",
    );
  } else {
    logger.info({ mode: "azure", graphqlUrl, metricsUrl }, `Crosswatch listening. GraphQL: ${graphqlUrl}`);
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    // Operations in flight may take up to their deadline; give them that, and a little for closing pools.
    const boundMs = config.incidents.operationTimeoutMs + 5_000;
    logger.info({ signal, drainMs: boundMs }, "shutting down: no new connections, draining operations in flight");
    const timer = setTimeout(() => {
      logger.error({ drainMs: boundMs }, "shutdown took longer than its bound; exiting");
      process.exit(1);
    }, boundMs);
    timer.unref();
    runtime.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "error during shutdown");
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: a library's signal-exit handler re-raises the signal when it finds itself the last
  // listener, which would kill the process in the middle of the drain. `stop` ignores repeats.
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((error: unknown) => {
  process.stderr.write(`crosswatch: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
