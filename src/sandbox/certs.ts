import { createHash, X509Certificate } from "node:crypto";
import { generate } from "selfsigned";

/** A TLS identity for the sandbox's HTTPS listener. */
export interface TlsIdentity {
  /** PEM certificate: give this to the server's undici dispatcher as its only trusted CA for the sandbox. */
  certPem: string;
  /** PEM PKCS#8 private key; never leaves the sandbox process. */
  keyPem: string;
}

/**
 * Generates a self-signed certificate for localhost, 127.0.0.1 and ::1, valid for a few days.
 * Made fresh at every start so no key is ever committed; costs roughly 100 ms (RSA 2048).
 */
export async function createLoopbackTlsIdentity(): Promise<TlsIdentity> {
  const pems = await generate([{ name: "commonName", value: "Crosswatch sandbox (localhost)" }], {
    keySize: 2048,
    notAfterDate: new Date(Date.now() + 7 * 86_400_000),
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, keyCertSign: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          { type: 2, value: "localhost" },
          { type: 7, ip: "127.0.0.1" },
          { type: 7, ip: "::1" },
        ],
      },
    ],
  });
  return { certPem: pems.cert, keyPem: pems.private };
}

/** A certificate credential of an app registration, as Entra stores it (public part only). */
export interface CertificateCredential {
  certPem: string;
  /** Base64url SHA-1 of the DER certificate: the `x5t` a client assertion may carry. */
  x5t: string;
  /** Base64url SHA-256 of the DER certificate: the `x5t#S256` a client assertion may carry. */
  x5tS256: string;
  /** Upper-case hex thumbprints, as the Azure portal shows them. */
  thumbprintSha1: string;
  thumbprintSha256: string;
}

/** Derives the thumbprints Entra matches client assertions against. */
export function describeCertificate(certPem: string): CertificateCredential {
  const der = new X509Certificate(certPem).raw;
  const sha1 = createHash("sha1").update(der).digest();
  const sha256 = createHash("sha256").update(der).digest();
  return {
    certPem,
    x5t: sha1.toString("base64url"),
    x5tS256: sha256.toString("base64url"),
    thumbprintSha1: sha1.toString("hex").toUpperCase(),
    thumbprintSha256: sha256.toString("hex").toUpperCase(),
  };
}

/**
 * Generates a certificate credential (key pair + self-signed cert) like the one a partner uploads to its
 * app registration. Used by the sandbox's default app and by tests of certificate-based client credentials.
 */
export async function createClientCertificate(subject = "CN=Crosswatch partner app"): Promise<{
  certPem: string;
  privateKeyPem: string;
  credential: CertificateCredential;
}> {
  const pems = await generate([{ name: "commonName", value: subject.replace(/^CN=/, "") }], {
    keySize: 2048,
    notAfterDate: new Date(Date.now() + 365 * 86_400_000),
    algorithm: "sha256",
  });
  return { certPem: pems.cert, privateKeyPem: pems.private, credential: describeCertificate(pems.cert) };
}
