import DataLoader from "dataloader";
import { TOKEN_RESOURCES, type AccessToken, type TokenProvider, type TokenResource } from "../auth/token-provider.js";

/** `${tenantId}|${resource}`, e.g. `8f1c…|defender`. */
export type TokenLoaderKey = `${string}|${TokenResource}`;

/** The per-request token loader. */
export type TokenLoader = DataLoader<TokenLoaderKey, AccessToken, string>;

/** The loader key of a tenant's token for a resource. */
export function tokenLoaderKey(tenantId: string, resource: TokenResource): TokenLoaderKey {
  return `${tenantId.trim().toLowerCase()}|${resource}`;
}

/**
 * A DataLoader of tokens for one GraphQL request: every resolver that needs a tenant's token in the same
 * tick shares one batch, and a token needed twice in a request is asked for once. The batch fans out to
 * the provider per key with settled results, so one tenant's failure is that key's error only.
 *
 * Build one per request (it caches, failures included, for the request's lifetime) and never share it.
 *
 * @param options.signal the request's deadline, handed to every `getToken`
 */
export function createTokenLoader(provider: TokenProvider, options: { signal?: AbortSignal } = {}): TokenLoader {
  const getOptions = options.signal ? { signal: options.signal } : {};
  return new DataLoader<TokenLoaderKey, AccessToken, string>(
    async (keys) => {
      const settled = await Promise.allSettled(
        keys.map((key) => {
          const separator = key.lastIndexOf("|");
          const tenantId = key.slice(0, separator);
          const resource = key.slice(separator + 1);
          if (separator <= 0 || !(TOKEN_RESOURCES as readonly string[]).includes(resource)) {
            return Promise.reject(new TypeError(`not a token loader key: ${key.slice(0, 80)}`));
          }
          return provider.getToken(tenantId, resource as TokenResource, getOptions);
        }),
      );
      return settled.map((result) => (result.status === "fulfilled" ? result.value : toError(result.reason)));
    },
    { cacheKeyFn: (key) => key.toLowerCase() },
  );
}

/** DataLoader treats only `Error` instances as failures; anything else thrown is wrapped. */
function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
