import { request, type Dispatcher } from "undici";
import { createDispatcher } from "../../src/http/dispatcher.js";
import type { SandboxOptions } from "../../src/sandbox/context.js";
import { startSandbox, type Sandbox } from "../../src/sandbox/sandbox.js";

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The parsed body, or undefined when it is not JSON. */
  json: any;
}

export interface TestSandbox {
  sandbox: Sandbox;
  /** A dispatcher that trusts the sandbox certificate, as the server's own does. */
  dispatcher: Dispatcher;
  /** Raw HTTPS call to the sandbox. `path` starts with `/`. */
  call(
    method: string,
    path: string,
    options?: { token?: string; json?: unknown; form?: Record<string, string>; headers?: Record<string, string>; body?: string },
  ): Promise<RawResponse>;
  close(): Promise<void>;
}

/** Starts a sandbox on a free loopback port with a dispatcher that trusts it. */
export async function startTestSandbox(options: SandboxOptions = {}): Promise<TestSandbox> {
  const sandbox = await startSandbox(options);
  const dispatcher = createDispatcher({
    trustedCaPem: [sandbox.caCertPem],
    connectTimeoutMs: 5_000,
    connectionsPerOrigin: 16,
  });
  return {
    sandbox,
    dispatcher,
    async call(method, path, opts = {}) {
      const headers: Record<string, string> = { ...opts.headers };
      let body: string | undefined = opts.body;
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      if (opts.json !== undefined) {
        headers["content-type"] = "application/json";
        body = JSON.stringify(opts.json);
      }
      if (opts.form) {
        headers["content-type"] = "application/x-www-form-urlencoded";
        body = new URLSearchParams(opts.form).toString();
      }
      const response = await request(`${sandbox.url}${path}`, {
        method: method as Dispatcher.HttpMethod,
        dispatcher,
        headers,
        body: body ?? null,
      });
      const text = await response.body.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: response.statusCode, headers: response.headers, text, json };
    },
    async close() {
      await sandbox.close();
      await dispatcher.close();
    },
  };
}
