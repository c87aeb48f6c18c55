import { createSecureContext, rootCertificates } from "node:tls";
import { Agent, type Dispatcher } from "undici";

export interface DispatcherOptions {
  /** Extra CA certificates to trust besides the system's (the sandbox's self-signed certificate). */
  trustedCaPem?: string[];
  connectTimeoutMs: number;
  /** Keep-alive connections per origin. */
  connectionsPerOrigin: number;
}

/**
 * The one undici dispatcher of the process: every upstream call (Entra, Defender, Graph) goes through it.
 * Trusting the sandbox's certificate here, and only here, is why no global TLS setting is ever needed.
 */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  // One TLS context for every connection: a `ca` list in the connect options would make Node build a new
  // context, parsing ~145 root certificates (about 25 ms of CPU), for each new connection.
  const secureContext =
    options.trustedCaPem && options.trustedCaPem.length > 0
      ? createSecureContext({ ca: [...rootCertificates, ...options.trustedCaPem] })
      : undefined;
  return new Agent({
    connections: options.connectionsPerOrigin,
    keepAliveTimeout: 30_000,
    connect: {
      timeout: options.connectTimeoutMs,
      ...(secureContext ? { secureContext } : {}),
    },
  });
}
