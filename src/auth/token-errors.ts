import { AuthError, ServerError } from "@azure/msal-node";
import { TokenClaimsError } from "./token-claims.js";

/**
 * Public failure codes of a tenant's token (and of its diagnosis). Stable: stored as a tenant's last
 * failure code and shown to partners, who switch on them.
 */
export const TOKEN_ERROR_CODES = [
  "CONSENT_REQUIRED",
  "RESOURCE_NOT_PROVISIONED",
  "MISSING_ROLE",
  "INVALID_CLIENT_CREDENTIAL",
  "CREDENTIAL_EXPIRED",
  "TENANT_NOT_FOUND",
  "ACCESS_BLOCKED",
  "THROTTLED",
  "TOKEN_ENDPOINT_UNAVAILABLE",
  "TOKEN_REQUEST_REJECTED",
  "TENANT_MISMATCH",
  "INTERNAL",
] as const;
export type TokenErrorCode = (typeof TOKEN_ERROR_CODES)[number];

/**
 * Codes that will not change until someone acts: the customer consents or enables the app, the operator
 * fixes the credential, the tenant id or the configuration. Crosswatch remembers them for a while
 * (TENANT_FAILURE_MEMORY_SECONDS) instead of asking Entra again on every query. Not TENANT_MISMATCH
 * (the provider retries it past MSAL's cache) nor INTERNAL (a bug says nothing about the tenant).
 */
export const LASTING_TOKEN_ERROR_CODES: readonly TokenErrorCode[] = [
  "CONSENT_REQUIRED",
  "RESOURCE_NOT_PROVISIONED",
  "MISSING_ROLE",
  "INVALID_CLIENT_CREDENTIAL",
  "CREDENTIAL_EXPIRED",
  "TENANT_NOT_FOUND",
  "ACCESS_BLOCKED",
  "TOKEN_REQUEST_REJECTED",
];

/** One line per code saying what went wrong, without any upstream text. */
const SUMMARIES: Record<TokenErrorCode, string> = {
  CONSENT_REQUIRED: "the app is not consented in the tenant",
  RESOURCE_NOT_PROVISIONED: "the requested API is not provisioned in the tenant",
  MISSING_ROLE: "the token carries none of the roles the operation needs",
  INVALID_CLIENT_CREDENTIAL: "Entra ID refused the app's client credential",
  CREDENTIAL_EXPIRED: "the app's client secret has expired",
  TENANT_NOT_FOUND: "the tenant does not exist in this cloud",
  ACCESS_BLOCKED: "the tenant blocks the app",
  THROTTLED: "Entra ID is throttling token requests",
  TOKEN_ENDPOINT_UNAVAILABLE: "the token endpoint gave no usable answer",
  TOKEN_REQUEST_REJECTED: "Entra ID rejected the token request",
  TENANT_MISMATCH: "the token was issued for another tenant than the one asked for",
  INTERNAL: "token acquisition failed unexpectedly",
};

/** What a person can do about each code. Shown next to the code in diagnostics and the UI. */
export const TOKEN_ERROR_HINTS: Record<TokenErrorCode, string> = {
  CONSENT_REQUIRED:
    "The customer's Global Administrator has not consented to the app in this tenant (or has removed it): send them the consent link, then verify the tenant again.",
  RESOURCE_NOT_PROVISIONED:
    "The API has no service principal in this tenant: for Defender, Microsoft Defender XDR (Microsoft Threat Protection) is not provisioned. Use the Graph backend for this tenant, or ask the customer to activate Microsoft Defender XDR.",
  MISSING_ROLE:
    "The app is consented without the incident permissions: ask the customer's Global Administrator to open the consent link again so the app's current permissions are granted.",
  INVALID_CLIENT_CREDENTIAL:
    "Entra ID rejected the app's own credential, so every tenant fails: check that AZURE_CLIENT_SECRET holds a current secret's value (not its ID), or that the certificate in AZURE_CLIENT_CERTIFICATE_PATH is uploaded to the app registration.",
  CREDENTIAL_EXPIRED:
    "The app's client secret has expired: create a new secret in the app registration (or switch to a certificate), update AZURE_CLIENT_SECRET and restart Crosswatch.",
  TENANT_NOT_FOUND:
    "No tenant with this id exists in this cloud: check the tenant id (a GUID) and that AZURE_AUTHORITY_HOST points at the customer's cloud.",
  ACCESS_BLOCKED:
    "The customer's tenant blocks the app: ask their administrator whether the app's enterprise application is disabled or a Conditional Access policy for workload identities blocks it.",
  THROTTLED: "Entra ID is throttling token requests: wait for retryAfterSeconds, then try again. Nothing needs fixing.",
  TOKEN_ENDPOINT_UNAVAILABLE:
    "Entra ID did not answer usably (outage, timeout or network problem): try again later; if it persists, check outbound HTTPS to the authority host and the Azure status page.",
  TOKEN_REQUEST_REJECTED:
    "Entra ID refused the request itself (look the AADSTS code up): usually a Crosswatch configuration error such as a wrong resource URI, not something the customer can fix.",
  TENANT_MISMATCH:
    "Entra ID returned a token for a different tenant than requested and Crosswatch discarded it: check the tenant id and AZURE_AUTHORITY_HOST; report it if it persists.",
  INTERNAL: "An unexpected error occurred while acquiring a token: look for the correlation id in the server log.",
};

/**
 * The AADSTS numbers a multi-tenant daemon meets (reference 3.4 and the sandbox's catalogue), each with its
 * public code and, where the number says more than the code, a more precise hint. Status 429 and 5xx
 * decide before this table (see `toTokenAcquisitionError`).
 *
 * Decisions: 500011 (and 650052, its consent-side twin) is RESOURCE_NOT_PROVISIONED, not CONSENT_REQUIRED: for client credentials it means the
 * resource's service principal (the product) is missing in the tenant, and consent cannot fix that.
 * 65001 only occurs in delegated flows but still means "no consent". Assertion failures (7000xx) are
 * credential problems of the app, like a wrong secret.
 */
export const AADSTS_CODES: ReadonlyMap<number, { code: TokenErrorCode; hint?: string }> = new Map<
  number,
  { code: TokenErrorCode; hint?: string }
>([
  [700016, { code: "CONSENT_REQUIRED" }],
  [7000229, { code: "CONSENT_REQUIRED" }],
  [65001, { code: "CONSENT_REQUIRED" }],
  [500011, { code: "RESOURCE_NOT_PROVISIONED" }],
  // Consent asking for a resource the tenant has no service principal for (the consent callback sees it).
  [650052, { code: "RESOURCE_NOT_PROVISIONED" }],
  [
    7000215,
    {
      code: "INVALID_CLIENT_CREDENTIAL",
      hint: "Invalid client secret: AZURE_CLIENT_SECRET most likely holds the secret's ID instead of its value. Copy the value of a current secret from the app registration.",
    },
  ],
  [
    700027,
    {
      code: "INVALID_CLIENT_CREDENTIAL",
      hint: "Entra ID did not accept the certificate assertion: upload the certificate in AZURE_CLIENT_CERTIFICATE_PATH to the app registration (Certificates & secrets), or replace it if it expired.",
    },
  ],
  [7000218, { code: "INVALID_CLIENT_CREDENTIAL", hint: "No client credential was sent: set AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH." }],
  [
    700024,
    {
      code: "INVALID_CLIENT_CREDENTIAL",
      hint: "The certificate assertion is outside its validity window: check this server's clock (NTP).",
    },
  ],
  [700021, { code: "INVALID_CLIENT_CREDENTIAL" }],
  [700023, { code: "INVALID_CLIENT_CREDENTIAL" }],
  [50027, { code: "INVALID_CLIENT_CREDENTIAL" }],
  [7000222, { code: "CREDENTIAL_EXPIRED" }],
  [90002, { code: "TENANT_NOT_FOUND" }],
  [900023, { code: "TENANT_NOT_FOUND" }],
  [7000112, { code: "ACCESS_BLOCKED", hint: "The app's enterprise application is disabled in the customer's tenant: ask their administrator to enable it." }],
  [70001, { code: "ACCESS_BLOCKED", hint: "The app is disabled or unavailable in the customer's tenant: ask their administrator to enable its enterprise application." }],
  [53003, { code: "ACCESS_BLOCKED", hint: "A Conditional Access policy for workload identities blocks the app: ask the customer's administrator to exclude it or allow this server's addresses." }],
  [90055, { code: "THROTTLED" }],
  [50196, { code: "THROTTLED" }],
  [90006, { code: "TOKEN_ENDPOINT_UNAVAILABLE" }],
  [50000, { code: "TOKEN_ENDPOINT_UNAVAILABLE" }],
  [1002012, { code: "TOKEN_REQUEST_REJECTED" }],
  [70011, { code: "TOKEN_REQUEST_REJECTED" }],
  [700022, { code: "TOKEN_REQUEST_REJECTED" }],
  [900144, { code: "TOKEN_REQUEST_REJECTED" }],
  [90014, { code: "TOKEN_REQUEST_REJECTED" }],
  [70003, { code: "TOKEN_REQUEST_REJECTED" }],
  [90023, { code: "TOKEN_REQUEST_REJECTED" }],
  [50059, { code: "TOKEN_REQUEST_REJECTED" }],
]);

/** OAuth `error` values, for AADSTS numbers the table does not know. */
const OAUTH_ERRORS: Record<string, TokenErrorCode> = {
  invalid_client: "INVALID_CLIENT_CREDENTIAL",
  invalid_resource: "RESOURCE_NOT_PROVISIONED",
  invalid_tenant: "TENANT_NOT_FOUND",
  temporarily_unavailable: "TOKEN_ENDPOINT_UNAVAILABLE",
  server_error: "TOKEN_ENDPOINT_UNAVAILABLE",
};

/** MSAL errors (`errorCode`) that mean no usable HTTP answer arrived. */
const MSAL_UNAVAILABLE = new Set([
  "network_error",
  "no_network_connectivity",
  "endpoints_resolution_error",
  "openid_config_error",
  "null_or_empty_token",
  "token_parsing_error",
]);

/** MSAL's throttling defaults (msal-common `Constants`): used when Retry-After is absent or not a number. */
const MSAL_DEFAULT_THROTTLE_SECONDS = 60;
const MSAL_MAX_THROTTLE_SECONDS = 3600;

/** What the token endpoint answered to a failed request, as the network layer saw it (no body). */
export interface TokenEndpointAnswer {
  status: number;
  /** `Retry-After` in seconds, when the answer had one in that form. */
  retryAfterSeconds?: number | undefined;
  /** `x-ms-request-id`: Entra's trace id. */
  requestId?: string | undefined;
}

/** Everything a `TokenAcquisitionError` is built from. */
export interface TokenAcquisitionErrorInit {
  code: TokenErrorCode;
  tenantId?: string | undefined;
  resource?: string | undefined;
  aadsts?: number | undefined;
  /** The OAuth `error` value (`invalid_client`, …). */
  oauthError?: string | undefined;
  httpStatus?: number | undefined;
  correlationId?: string | undefined;
  traceId?: string | undefined;
  retryAfterSeconds?: number | undefined;
  /**
   * Set when a lasting failure is answered again from memory, without asking Entra: seconds until it will be
   * asked again. Becomes `retryAfterSeconds` but, unlike it, leaves the message as the original's.
   */
  rememberedForSeconds?: number | undefined;
  /** Overrides the code's hint (a more precise one for the AADSTS number). */
  hint?: string | undefined;
  /** Extra words after the summary; must never hold upstream text, tokens or secrets. */
  detail?: string | undefined;
  cause?: unknown;
}

/**
 * A tenant's token could not be had. The message names the tenant, the resource, the AADSTS number and the
 * correlation id to quote to Microsoft support; it never contains a token, a secret or the upstream body
 * (the MSAL error kept as `cause` does carry Entra's description, which holds neither).
 */
export class TokenAcquisitionError extends Error {
  override readonly name = "TokenAcquisitionError";
  readonly code: TokenErrorCode;
  readonly hint: string;
  readonly tenantId: string | undefined;
  readonly resource: string | undefined;
  readonly aadsts: number | undefined;
  readonly oauthError: string | undefined;
  readonly httpStatus: number | undefined;
  readonly correlationId: string | undefined;
  readonly traceId: string | undefined;
  /**
   * Set when identical requests are refused for a while (throttling, and 5xx answers MSAL backs off from):
   * seconds until a new attempt can reach Entra.
   */
  readonly retryAfterSeconds: number | undefined;
  /** Set when this is a remembered lasting failure (see `rememberedFor`): seconds until Entra is asked again. */
  readonly rememberedForSeconds: number | undefined;
  /** Kept so a remembered copy's message is the original's, word for word. */
  private readonly detail: string | undefined;

  constructor(init: TokenAcquisitionErrorInit) {
    super(describe(init), init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.hint = init.hint ?? TOKEN_ERROR_HINTS[init.code];
    this.tenantId = init.tenantId;
    this.resource = init.resource;
    this.aadsts = init.aadsts;
    this.oauthError = init.oauthError;
    this.httpStatus = init.httpStatus;
    this.correlationId = init.correlationId;
    this.traceId = init.traceId;
    this.retryAfterSeconds = init.rememberedForSeconds ?? init.retryAfterSeconds;
    this.rememberedForSeconds = init.rememberedForSeconds;
    this.detail = init.detail;
  }

  /** Whether the same request may succeed later without anyone changing anything. */
  get transient(): boolean {
    return this.code === "THROTTLED" || this.code === "TOKEN_ENDPOINT_UNAVAILABLE";
  }

  /** Whether nothing will change until someone acts (`LASTING_TOKEN_ERROR_CODES`). */
  get lasting(): boolean {
    return LASTING_TOKEN_ERROR_CODES.includes(this.code);
  }

  /**
   * The same failure — code, message, hint, correlation id of the request Entra answered — given again from
   * memory, with `retryAfterSeconds` the seconds until Entra will be asked again.
   */
  rememberedFor(seconds: number): TokenAcquisitionError {
    if (this.rememberedForSeconds !== undefined && this.cause instanceof TokenAcquisitionError) return this.cause.rememberedFor(seconds);
    return new TokenAcquisitionError({
      ...this.init(),
      detail: this.detail,
      retryAfterSeconds: this.retryAfterSeconds,
      rememberedForSeconds: seconds,
      cause: this,
    });
  }

  /** The same failure with another retry-after (for refusals while a back-off window lasts). */
  withRetryAfter(retryAfterSeconds: number): TokenAcquisitionError {
    return new TokenAcquisitionError({ ...this.init(), retryAfterSeconds, cause: this });
  }

  /** The fields a diagnosis or an API answer may show. */
  toPublic(): { code: TokenErrorCode; message: string; hint: string; retryAfterSeconds?: number } {
    return {
      code: this.code,
      message: this.message,
      hint: this.hint,
      ...(this.retryAfterSeconds !== undefined ? { retryAfterSeconds: this.retryAfterSeconds } : {}),
    };
  }

  private init(): TokenAcquisitionErrorInit {
    return {
      code: this.code,
      tenantId: this.tenantId,
      resource: this.resource,
      aadsts: this.aadsts,
      oauthError: this.oauthError,
      httpStatus: this.httpStatus,
      correlationId: this.correlationId,
      traceId: this.traceId,
      hint: this.hint,
    };
  }
}

function describe(init: TokenAcquisitionErrorInit): string {
  const facts: string[] = [];
  if (init.tenantId) facts.push(`tenant ${init.tenantId}`);
  if (init.resource) facts.push(init.resource);
  if (init.aadsts !== undefined) facts.push(`AADSTS${init.aadsts}${init.oauthError ? ` ${init.oauthError}` : ""}`);
  else if (init.oauthError) facts.push(init.oauthError);
  if (init.httpStatus !== undefined) facts.push(`HTTP ${init.httpStatus}`);
  if (init.correlationId) facts.push(`correlation id ${init.correlationId}`);
  if (init.retryAfterSeconds !== undefined) facts.push(`retry after ${init.retryAfterSeconds} s`);
  const summary = SUMMARIES[init.code] + (init.detail ? ` (${init.detail})` : "");
  return facts.length > 0 ? `${summary} [${facts.join(", ")}]` : summary;
}

/** Where a failure happened, to put in the error. */
export interface TokenErrorContext {
  tenantId?: string | undefined;
  resource?: string | undefined;
  /** The correlation id the request was sent with (MSAL's `client-request-id`). */
  correlationId?: string | undefined;
  /** What the token endpoint answered, when the network layer recorded it. */
  answer?: TokenEndpointAnswer | undefined;
}

/**
 * Maps whatever a token acquisition threw (MSAL `ServerError`s from AADSTS bodies, MSAL's own throttle
 * refusals, `ClientAuthError`s for network failures, undici errors, unreadable tokens) to a
 * `TokenAcquisitionError` with a public code. Precedence: HTTP 429 → THROTTLED; HTTP 5xx →
 * TOKEN_ENDPOINT_UNAVAILABLE; then the AADSTS number; then the OAuth `error` value; else
 * TOKEN_REQUEST_REJECTED (an Entra refusal) or INTERNAL (anything that is not one).
 *
 * `retryAfterSeconds` is set exactly when MSAL will now refuse identical requests locally (it does so
 * after any 429, any 5xx, and any error answer carrying Retry-After): the back-off MSAL applies.
 */
export function toTokenAcquisitionError(error: unknown, context: TokenErrorContext = {}): TokenAcquisitionError {
  if (error instanceof TokenAcquisitionError) return error;
  const base = { tenantId: context.tenantId, resource: context.resource, cause: error, traceId: context.answer?.requestId };

  if (error instanceof TokenClaimsError) {
    return new TokenAcquisitionError({
      ...base,
      code: "TOKEN_ENDPOINT_UNAVAILABLE",
      detail: "the access token in the answer is unreadable",
      correlationId: context.correlationId,
    });
  }

  if (isAuthError(error)) {
    const correlationId = error.correlationId || context.correlationId;
    const serverErrorNo = "errorNo" in error ? parseAadsts((error as { errorNo?: unknown }).errorNo) : undefined;
    const status = "status" in error && typeof error.status === "number" ? error.status : context.answer?.status;

    // MSAL's throttle cache answers a ServerError with neither status nor errorNo; its errorCode is the
    // stored AADSTS numbers ("90055") instead of the OAuth error.
    if (error.name === "ServerError" && status === undefined && serverErrorNo === undefined && /^\d[\d ]*$/.test(error.errorCode)) {
      return new TokenAcquisitionError({
        ...base,
        code: "THROTTLED",
        aadsts: parseAadsts(error.errorCode.split(" ")[0]),
        correlationId,
        detail: "MSAL is backing off after an earlier 429 or 5xx answer",
      });
    }

    if (serverErrorNo !== undefined || error.name === "ServerError" || error.name === "InteractionRequiredAuthError") {
      const oauthError = error.errorCode || undefined;
      const retryAfterSeconds = msalBackoffSeconds(status, context.answer?.retryAfterSeconds);
      const common = { ...base, aadsts: serverErrorNo, oauthError, httpStatus: status, correlationId, retryAfterSeconds };
      if (status === 429) return new TokenAcquisitionError({ ...common, code: "THROTTLED" });
      if (status !== undefined && status >= 500) return new TokenAcquisitionError({ ...common, code: "TOKEN_ENDPOINT_UNAVAILABLE" });
      const known = serverErrorNo !== undefined ? AADSTS_CODES.get(serverErrorNo) : undefined;
      if (known) return new TokenAcquisitionError({ ...common, code: known.code, hint: known.hint });
      const byOauth = oauthError ? OAUTH_ERRORS[oauthError] : undefined;
      return new TokenAcquisitionError({ ...common, code: byOauth ?? "TOKEN_REQUEST_REJECTED" });
    }

    if (MSAL_UNAVAILABLE.has(error.errorCode)) {
      return new TokenAcquisitionError({ ...base, code: "TOKEN_ENDPOINT_UNAVAILABLE", oauthError: undefined, correlationId, detail: `MSAL ${error.errorCode}` });
    }
    // ClientConfigurationError and the remaining ClientAuthErrors are Crosswatch bugs or misconfiguration.
    return new TokenAcquisitionError({ ...base, code: "INTERNAL", correlationId, detail: `MSAL ${error.errorCode || error.name}` });
  }

  if (isTransportError(error)) {
    return new TokenAcquisitionError({ ...base, code: "TOKEN_ENDPOINT_UNAVAILABLE", correlationId: context.correlationId, detail: "no answer" });
  }
  return new TokenAcquisitionError({ ...base, code: "INTERNAL", correlationId: context.correlationId });
}

/**
 * How long MSAL now refuses identical requests (msal-common `ThrottlingUtils`): for a 429, a 5xx or any
 * error answer with Retry-After, Retry-After seconds when positive, else 60, at most 3600. Undefined when
 * MSAL stores no throttle entry.
 */
export function msalBackoffSeconds(status: number | undefined, retryAfterSeconds: number | undefined): number | undefined {
  const throttles = status === 429 || (status !== undefined && status >= 500 && status < 600) || retryAfterSeconds !== undefined;
  if (!throttles) return undefined;
  const seconds = retryAfterSeconds !== undefined && retryAfterSeconds > 0 ? retryAfterSeconds : MSAL_DEFAULT_THROTTLE_SECONDS;
  return Math.min(seconds, MSAL_MAX_THROTTLE_SECONDS);
}

/** MSAL errors cross package copies in tests; recognise them by shape as well as by class. */
function isAuthError(error: unknown): error is AuthError {
  if (error instanceof AuthError || error instanceof ServerError) return true;
  return (
    error instanceof Error &&
    typeof (error as Partial<AuthError>).errorCode === "string" &&
    typeof (error as Partial<AuthError>).correlationId === "string"
  );
}

/** undici, DNS and socket failures, aborts and timeouts: no HTTP answer at all. */
function isTransportError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === "AbortError" || error.name === "TimeoutError") return true;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && (code.startsWith("UND_ERR") || /^E[A-Z]+$/.test(code));
}

function parseAadsts(value: unknown): number | undefined {
  if (typeof value === "number" && Number.isInteger(value) && value > 0) return value;
  if (typeof value === "string" && /^\d+$/.test(value.trim())) return Number(value.trim());
  return undefined;
}
