import { createHash, createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  ConfidentialClientApplication,
  LogLevel,
  type Configuration,
  type INetworkModule,
  type NetworkRequestOptions,
  type NetworkResponse,
} from "@azure/msal-node";
import type { Logger } from "pino";
import { ConfigError, type AppCredential } from "../config.js";
import type { TokenEndpointAnswer } from "./token-errors.js";

/**
 * Hosts MSAL knows by itself (msal-common `AuthorityMetadata`: the public cloud and its aliases, China,
 * US Government, Germany, the sovereign clouds). Any other host, such as the sandbox's `localhost:PORT`,
 * must be declared in `knownAuthorities`.
 */
const MICROSOFT_AUTHORITY_HOSTS = new Set([
  "login.microsoftonline.com",
  "login.windows.net",
  "login.microsoft.com",
  "sts.windows.net",
  "login.partner.microsoftonline.cn",
  "login.chinacloudapi.cn",
  "login.microsoftonline.de",
  "login.microsoftonline.us",
  "login.usgovcloudapi.net",
  "login-us.microsoftonline.com",
  "login.sovcloud-identity.fr",
  "login.sovcloud-identity.de",
  "login.sovcloud-identity.sg",
]);

/** Whether MSAL resolves this authority host without `knownAuthorities`. */
export function isMicrosoftAuthorityHost(authorityHost: string): boolean {
  return MICROSOFT_AUTHORITY_HOSTS.has(new URL(authorityHost).host.toLowerCase());
}

/** What `createConfidentialClient` needs: the app credential, the cloud, the transport and the logger. */
export interface ConfidentialClientOptions {
  credential: AppCredential;
  /** `https://login.microsoftonline.com`, a sovereign cloud's, or the sandbox URL; no trailing slash needed. */
  authorityHost: string;
  /** MSAL's transport: the process's `UndiciNetworkClient`. */
  networkClient: INetworkModule;
  logger: Logger;
  /**
   * Certificate credentials only: send the certificate chain (`x5c`) in every client assertion, which
   * subject name + issuer ("SNI") authentication needs. Default false: the thumbprint alone.
   */
  sendCertificateChain?: boolean;
}

/**
 * Builds the process's one MSAL `ConfidentialClientApplication`. It owns the token cache, keyed per tenant,
 * so there must be exactly one per process; every token request names its customer tenant as authority
 * (`${authorityHost}/${tenantId}`), the configured `…/organizations` authority is never used for tokens
 * (MSAL refuses client credentials on it before any network call, so a forgotten authority fails closed).
 *
 * For a host MSAL does not know (the sandbox), the host goes in `knownAuthorities` and the endpoint
 * metadata is given as the same `{tenantid}` template MSAL hard-codes for Microsoft's clouds: so MSAL never
 * fetches a discovery document, and an unknown tenant fails on the token POST with AADSTS90002 exactly
 * as it does against login.microsoftonline.com.
 *
 * @throws ConfigError when the certificate file cannot be used (nothing of its content is echoed)
 */
export async function createConfidentialClient(options: ConfidentialClientOptions): Promise<ConfidentialClientApplication> {
  const authorityHost = options.authorityHost.replace(/\/+$/, "");
  const credential = options.credential;
  let secretOrCertificate: Pick<Configuration["auth"], "clientSecret" | "clientCertificate">;
  if (credential.kind === "secret") {
    secretOrCertificate = { clientSecret: credential.clientSecret };
  } else {
    const certificate = await loadCertificateCredential(credential.certificatePath);
    if (certificate.notAfter.getTime() < Date.now()) {
      options.logger.warn(
        { thumbprintSha256: certificate.thumbprintSha256, notAfter: certificate.notAfter.toISOString() },
        "the client certificate has expired: Entra ID will refuse its assertions (AADSTS700027)",
      );
    }
    secretOrCertificate = {
      clientCertificate: {
        thumbprintSha256: certificate.thumbprintSha256,
        privateKey: certificate.privateKeyPem,
        ...(options.sendCertificateChain ? { x5c: certificate.chainPem.join("\n") } : {}),
      },
    };
  }

  const custom = !isMicrosoftAuthorityHost(authorityHost);
  const log = new TokenEndpointLog();
  const app = new ConfidentialClientApplication({
    auth: {
      clientId: credential.clientId,
      authority: `${authorityHost}/organizations`,
      ...secretOrCertificate,
      ...(custom
        ? { knownAuthorities: [new URL(authorityHost).host], authorityMetadata: JSON.stringify(templatedEndpoints(authorityHost)) }
        : {}),
    },
    system: {
      networkClient: new ObservingNetworkClient(options.networkClient, log),
      loggerOptions: msalLoggerOptions(options.logger),
    },
  });
  logs.set(app, log);
  return app;
}

/** Endpoint metadata as MSAL hard-codes it for Microsoft's clouds (`buildOpenIdConfig`), on another host. */
function templatedEndpoints(authorityHost: string): Record<string, string> {
  return {
    token_endpoint: `${authorityHost}/{tenantid}/oauth2/v2.0/token`,
    jwks_uri: `${authorityHost}/{tenantid}/discovery/v2.0/keys`,
    issuer: `${authorityHost}/{tenantid}/v2.0`,
    authorization_endpoint: `${authorityHost}/{tenantid}/oauth2/v2.0/authorize`,
    end_session_endpoint: `${authorityHost}/{tenantid}/oauth2/v2.0/logout`,
  };
}

/** MSAL warnings that are expected for app-only tokens and say nothing actionable. */
const EXPECTED_MSAL_WARNINGS = [/No client info in response/];

/**
 * MSAL's logger into pino: warnings and errors only, PII never (MSAL flags such messages; they are
 * dropped, not just unflagged). MSAL's own messages hold no secrets or tokens, but may quote Entra's error
 * description; they are clipped so a pathological answer cannot flood the log.
 */
function msalLoggerOptions(logger: Logger): NonNullable<NonNullable<Configuration["system"]>["loggerOptions"]> {
  const child = logger.child({ component: "msal" });
  return {
    logLevel: LogLevel.Warning,
    piiLoggingEnabled: false,
    loggerCallback(level, message, containsPii) {
      if (containsPii) return;
      const text = message.length > 1000 ? `${message.slice(0, 1000)}…` : message;
      if (level === LogLevel.Error) child.error(text);
      else if (EXPECTED_MSAL_WARNINGS.some((pattern) => pattern.test(text))) child.debug(text);
      else child.warn(text);
    },
  };
}

/**
 * The status, Retry-After and trace id of failed token-endpoint answers, by the request's correlation id
 * (`client-request-id`). MSAL's `ServerError` keeps neither Retry-After nor the trace id, and a 429's
 * Retry-After is what a caller must be told. Bounded: entries are taken once and the oldest are dropped.
 */
export class TokenEndpointLog {
  private readonly answers = new Map<string, TokenEndpointAnswer>();

  constructor(private readonly capacity = 1000) {}

  record(correlationId: string, answer: TokenEndpointAnswer): void {
    this.answers.delete(correlationId);
    this.answers.set(correlationId, answer);
    while (this.answers.size > this.capacity) {
      const oldest = this.answers.keys().next().value;
      if (oldest === undefined) break;
      this.answers.delete(oldest);
    }
  }

  /** Returns and forgets the answer to one request. */
  take(correlationId: string): TokenEndpointAnswer | undefined {
    const answer = this.answers.get(correlationId);
    this.answers.delete(correlationId);
    return answer;
  }
}

const logs = new WeakMap<object, TokenEndpointLog>();

/**
 * The answer log of a client built by `createConfidentialClient` (undefined for any other client, e.g. a
 * test double). Kept beside the client rather than on it so the factory still returns a plain CCA.
 */
export function tokenEndpointLogOf(client: object): TokenEndpointLog | undefined {
  return logs.get(client);
}

/** Passes every call through; records error answers for `TokenEndpointLog`. Never reads bodies. */
class ObservingNetworkClient implements INetworkModule {
  constructor(
    private readonly inner: INetworkModule,
    private readonly log: TokenEndpointLog,
  ) {}

  sendGetRequestAsync<T>(url: string, options?: NetworkRequestOptions, timeout?: number): Promise<NetworkResponse<T>> {
    return this.inner.sendGetRequestAsync<T>(url, options, timeout);
  }

  async sendPostRequestAsync<T>(url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    const response = await this.inner.sendPostRequestAsync<T>(url, options);
    if (response.status < 200 || response.status >= 300) {
      const correlationId = options?.correlationId ?? queryCorrelationId(url);
      if (correlationId) {
        this.log.record(correlationId, {
          status: response.status,
          retryAfterSeconds: parseRetryAfter(header(response.headers, "retry-after")),
          requestId: header(response.headers, "x-ms-request-id"),
        });
      }
    }
    return response;
  }
}

function queryCorrelationId(url: string): string | undefined {
  try {
    return new URL(url).searchParams.get("client-request-id") ?? undefined;
  } catch {
    return undefined;
  }
}

function header(headers: Record<string, string> | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value;
  return undefined;
}

/** Delta seconds only, as MSAL reads it (`parseInt`); an HTTP date gives undefined, and MSAL's 60 s applies. */
function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number.parseInt(value, 10);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

/** A certificate credential read from a PEM file: the private key and the certificate it belongs to. */
export interface CertificateCredentialFile {
  /** PKCS#8 PEM, as MSAL signs with it. Never logged. */
  privateKeyPem: string;
  /** The certificate matching the key, then any other certificates of the file (its chain). */
  chainPem: string[];
  /** Upper-case hex SHA-256 of the certificate's DER: what MSAL puts in `x5t#S256`. */
  thumbprintSha256: string;
  notAfter: Date;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\r\n]+[\s\S]*?-----END \1-----/g;

/**
 * Reads a PEM file holding an unencrypted private key and its certificate (optionally the chain), the
 * format Azure tooling exports. The certificate is the one whose public key matches the private key.
 *
 * @throws ConfigError naming AZURE_CLIENT_CERTIFICATE_PATH and the problem, never the file's content
 */
export async function loadCertificateCredential(path: string): Promise<CertificateCredentialFile> {
  const fail = (problem: string): never => {
    throw new ConfigError([`AZURE_CLIENT_CERTIFICATE_PATH: ${problem}`]);
  };
  let text = "";
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    fail(`cannot read the file (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  const blocks = [...text.matchAll(PEM_BLOCK)].map((match) => ({ label: match[1]!, pem: match[0] }));
  const keyBlocks = blocks.filter((b) => b.label.endsWith("PRIVATE KEY"));
  if (keyBlocks.some((b) => b.label === "ENCRYPTED PRIVATE KEY") || /Proc-Type: 4,ENCRYPTED/.test(text)) {
    fail("the private key is encrypted; store it unencrypted in a file only the server can read");
  }
  if (keyBlocks.length !== 1) fail(keyBlocks.length === 0 ? "the file holds no private key" : "the file holds more than one private key");
  let key: KeyObject | undefined;
  try {
    key = createPrivateKey(keyBlocks[0]!.pem);
  } catch {
    fail("the private key cannot be parsed");
  }
  const certificates: X509Certificate[] = [];
  for (const block of blocks.filter((b) => b.label === "CERTIFICATE")) {
    try {
      certificates.push(new X509Certificate(block.pem));
    } catch {
      fail("a certificate in the file cannot be parsed");
    }
  }
  if (certificates.length === 0) fail("the file holds no certificate");
  const leaf = certificates.find((c) => c.checkPrivateKey(key!));
  if (!leaf) fail("no certificate in the file matches the private key");
  const chain = [leaf!, ...certificates.filter((c) => c !== leaf)];
  return {
    privateKeyPem: key!.export({ type: "pkcs8", format: "pem" }).toString(),
    chainPem: chain.map((c) => c.toString()),
    thumbprintSha256: createHash("sha256").update(leaf!.raw).digest("hex").toUpperCase(),
    notAfter: new Date(leaf!.validTo),
  };
}
