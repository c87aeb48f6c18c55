import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { SignJWT, type JWTPayload } from "jose";
import { TokenClaimsError, decodeTokenClaims, tokenFingerprint } from "../../../src/auth/token-claims.js";

const TID = "11111111-1111-1111-1111-111111111111";
const APP = "22222222-2222-2222-2222-222222222222";
const OID = "33333333-3333-3333-3333-333333333333";
const KEY = new TextEncoder().encode("not-verified-so-any-key-will-do-0123456789");

/** The illustrative v1 Defender payload of reference 4.3. */
const V1: JWTPayload = {
  aud: "https://api.security.microsoft.com",
  iss: `https://sts.windows.net/${TID}/`,
  iat: 1735787045,
  nbf: 1735787045,
  exp: 1735791245,
  aio: "k2BgYFh",
  appid: APP,
  appidacr: "1",
  idp: `https://sts.windows.net/${TID}/`,
  idtyp: "app",
  oid: OID,
  sub: OID,
  rh: "1.AXEA.",
  roles: ["Incident.Read.All"],
  tid: TID,
  uti: "AbCdEfGhIjKlMnOpQrStUv",
  ver: "1.0",
};

function sign(payload: JWTPayload): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(KEY);
}

function without(payload: JWTPayload, ...names: string[]): JWTPayload {
  const copy = { ...payload };
  for (const name of names) delete copy[name];
  return copy;
}

describe("decodeTokenClaims", () => {
  it("reads a v1 app-only token", async () => {
    assert.deepEqual(decodeTokenClaims(await sign(V1)), {
      tid: TID,
      aud: "https://api.security.microsoft.com",
      iss: `https://sts.windows.net/${TID}/`,
      appId: APP,
      roles: ["Incident.Read.All"],
      ver: "1.0",
      iat: 1735787045,
      nbf: 1735787045,
      exp: 1735791245,
      idtyp: "app",
      oid: OID,
    });
  });

  it("reads a v2 token: azp for the app id, the GUID audience", async () => {
    const v2 = {
      ...without(V1, "appid", "appidacr"),
      azp: APP,
      azpacr: "1",
      aud: "8ee8fdad-f234-4243-8f3b-15c294843740",
      iss: `https://login.microsoftonline.com/${TID}/v2.0`,
      ver: "2.0",
    };
    const claims = decodeTokenClaims(await sign(v2));
    assert.equal(claims.appId, APP);
    assert.equal(claims.ver, "2.0");
    assert.equal(claims.aud, "8ee8fdad-f234-4243-8f3b-15c294843740");
  });

  it("gives no roles when the claim is absent (nothing granted), and defaults nbf and idtyp", async () => {
    const claims = decodeTokenClaims(await sign(without(V1, "roles", "nbf", "idtyp")));
    assert.deepEqual(claims.roles, []);
    assert.equal(claims.nbf, claims.iat);
    assert.equal(claims.idtyp, undefined);
  });

  it("lower-cases the tenant id and takes the first of several audiences", async () => {
    const claims = decodeTokenClaims(await sign({ ...V1, tid: TID.toUpperCase().replace(/1/g, "A"), aud: ["https://a.example", "https://b.example"] }));
    assert.equal(claims.tid, TID.replace(/1/g, "a"));
    assert.equal(claims.aud, "https://a.example");
  });

  it("refuses what is not an app-only JWT, naming the claim and never echoing the token", async () => {
    for (const bad of ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.bm90LWpzb24.sig"]) {
      assert.throws(() => decodeTokenClaims(bad), (e: unknown) => e instanceof TokenClaimsError && e.code === "TOKEN_UNREADABLE");
    }
    for (const claim of ["tid", "exp", "iat", "oid", "ver", "iss"]) {
      const token = await sign(without(V1, claim));
      assert.throws(
        () => decodeTokenClaims(token),
        (e: unknown) => e instanceof TokenClaimsError && e.message.includes(claim) && !e.message.includes(token),
        claim,
      );
    }
    assert.throws(() => decodeTokenClaims(`${Buffer.from('{"typ":"JWT"}').toString("base64url")}.${Buffer.from("{}").toString("base64url")}.x`), TokenClaimsError);
    const noApp = await sign(without(V1, "appid"));
    assert.throws(() => decodeTokenClaims(noApp), /appid/);
    const badRoles = await sign({ ...V1, roles: "Incident.Read.All" });
    assert.throws(() => decodeTokenClaims(badRoles), /roles/);
  });
});

describe("tokenFingerprint", () => {
  it("is the first 12 hex digits of the SHA-256: stable, short, different per token", async () => {
    const token = await sign(V1);
    const fingerprint = tokenFingerprint(token);
    assert.match(fingerprint, /^[0-9a-f]{12}$/);
    assert.equal(fingerprint, createHash("sha256").update(token).digest("hex").slice(0, 12));
    assert.equal(tokenFingerprint(token), fingerprint);
    assert.notEqual(tokenFingerprint(await sign({ ...V1, uti: "other" })), fingerprint);
    assert.ok(!token.includes(fingerprint));
  });
});
