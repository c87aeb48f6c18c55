import type { INetworkModule, NetworkRequestOptions, NetworkResponse } from "@azure/msal-node";
import { request, type Dispatcher } from "undici";

/** Timeouts for calls to the Entra authority. MSAL sets none of its own on the token POST. */
export interface AuthorityTimeouts {
  /** Connection establishment, TLS included. */
  connectMs: number;
  /** Until response headers arrive. */
  headersMs: number;
  /** Between body chunks. */
  bodyMs: number;
  /** Whole call, the hard stop. */
  totalMs: number;
}

export const DEFAULT_AUTHORITY_TIMEOUTS: AuthorityTimeouts = {
  connectMs: 5_000,
  headersMs: 10_000,
  bodyMs: 10_000,
  totalMs: 15_000,
};

/** Token responses are a few kilobytes; anything past this is not a token response. */
const MAX_AUTHORITY_BODY_BYTES = 256 * 1024;

/**
 * MSAL Node's `system.networkClient`, built on undici so that token calls share the process's dispatcher
 * (its TLS trust, keep-alive pool and timeouts) with every other upstream call.
 *
 * MSAL's contract: resolve (never reject) non-2xx answers with status, headers and the parsed JSON body, so
 * it can turn AADSTS bodies into `ServerError`s; reject only when there is no HTTP answer at all.
 */
export class UndiciNetworkClient implements INetworkModule {
  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly timeouts: AuthorityTimeouts = DEFAULT_AUTHORITY_TIMEOUTS,
  ) {}

  sendGetRequestAsync<T>(url: string, options?: NetworkRequestOptions, timeout?: number): Promise<NetworkResponse<T>> {
    return this.send<T>("GET", url, options, timeout);
  }

  sendPostRequestAsync<T>(url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    return this.send<T>("POST", url, options);
  }

  private async send<T>(
    method: "GET" | "POST",
    url: string,
    options: NetworkRequestOptions | undefined,
    timeout?: number,
  ): Promise<NetworkResponse<T>> {
    const response = await request(url, {
      method,
      dispatcher: this.dispatcher,
      headers: options?.headers ?? {},
      body: method === "POST" ? (options?.body ?? "") : null,
      headersTimeout: this.timeouts.headersMs,
      bodyTimeout: this.timeouts.bodyMs,
      signal: AbortSignal.timeout(timeout ?? this.timeouts.totalMs),
    });
    const text = await readLimited(response.body, MAX_AUTHORITY_BODY_BYTES);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(response.headers)) {
      if (value === undefined) continue;
      headers[name] = Array.isArray(value) ? value.join(", ") : value;
    }
    return { status: response.statusCode, headers, body: parseJsonOrEmpty(text) as T };
  }
}

async function readLimited(body: Dispatcher.ResponseData["body"], limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.destroy();
      throw new Error(`authority response larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** MSAL expects an object; an empty or non-JSON body (an HTML error page from a proxy) becomes `{}`. */
function parseJsonOrEmpty(text: string): unknown {
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}
