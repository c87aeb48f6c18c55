import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ConfigError } from "../../../src/config.js";
import { isMicrosoftAuthorityHost, loadCertificateCredential } from "../../../src/auth/msal-client.js";
import { createClientCertificate } from "../../../src/sandbox/certs.js";

describe("loadCertificateCredential", () => {
  let dir: string;
  let app: Awaited<ReturnType<typeof createClientCertificate>>;
  let other: Awaited<ReturnType<typeof createClientCertificate>>;
  const file = async (name: string, content: string) => {
    const path = join(dir, name);
    await writeFile(path, content);
    return path;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "crosswatch-cert-"));
    [app, other] = await Promise.all([createClientCertificate(), createClientCertificate("CN=Issuer")]);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads key and certificate in either order, with the SHA-256 thumbprint Entra shows", async () => {
    for (const content of [`${app.privateKeyPem}\n${app.certPem}`, `${app.certPem}\n${other.certPem}\n${app.privateKeyPem}`]) {
      const loaded = await loadCertificateCredential(await file("app.pem", content));
      assert.equal(loaded.thumbprintSha256, app.credential.thumbprintSha256);
      assert.match(loaded.privateKeyPem, /^-----BEGIN PRIVATE KEY-----/);
      assert.equal(loaded.chainPem[0]!.trim(), app.certPem.trim(), "the matching certificate comes first");
      assert.ok(loaded.notAfter.getTime() > Date.now());
    }
  });

  it("refuses unusable files with a ConfigError that echoes nothing of the file", async () => {
    const encrypted = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      privateKeyEncoding: { type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "pw" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    }).privateKey;
    const cases: [string, string | undefined, RegExp][] = [
      ["missing.pem", undefined, /cannot read the file \(ENOENT\)/],
      ["cert-only.pem", app.certPem, /no private key/],
      ["key-only.pem", app.privateKeyPem, /no certificate/],
      ["mismatch.pem", `${app.privateKeyPem}\n${other.certPem}`, /no certificate in the file matches the private key/],
      ["encrypted.pem", `${encrypted}\n${app.certPem}`, /encrypted/],
      ["two-keys.pem", `${app.privateKeyPem}\n${other.privateKeyPem}\n${app.certPem}`, /more than one private key/],
    ];
    for (const [name, content, problem] of cases) {
      const path = content === undefined ? join(dir, name) : await file(name, content);
      await assert.rejects(loadCertificateCredential(path), (error: unknown) => {
        assert.ok(error instanceof ConfigError, name);
        assert.equal(error.code, "CONFIG_INVALID");
        assert.match(error.message, /AZURE_CLIENT_CERTIFICATE_PATH/);
        assert.match(error.message, problem);
        assert.ok(!error.message.includes("BEGIN"), "no PEM content echoed");
        return true;
      });
    }
  });
});

describe("isMicrosoftAuthorityHost", () => {
  it("knows Microsoft's clouds and nothing else", () => {
    for (const host of ["https://login.microsoftonline.com", "https://login.microsoftonline.us/", "https://login.chinacloudapi.cn"]) {
      assert.equal(isMicrosoftAuthorityHost(host), true, host);
    }
    for (const host of ["https://localhost:8443", "https://login.microsoftonline.com.evil.example", "https://127.0.0.1:4443"]) {
      assert.equal(isMicrosoftAuthorityHost(host), false, host);
    }
  });
});
