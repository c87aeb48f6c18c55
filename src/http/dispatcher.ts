import { rootCertificates } from "node:tls";
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
  return new Agent({
    connections: options.connectionsPerOrigin,
    keepAliveTimeout: 30_000,
    connect: {
      timeout: options.connectTimeoutMs,
      ...(options.trustedCaPem && options.trustedCaPem.length > 0
        ? { ca: [...rootCertificates, ...options.trustedCaPem] }
        : {}),
    },
  });
}
