import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { createDispatcher } from "../../src/http/dispatcher.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

/** The process dispatcher trusts the system roots plus the configured CAs, and nothing else. */
describe("createDispatcher", () => {
  let t: TestSandbox;
  before(async () => {
    t = await startTestSandbox();
  });
  after(async () => {
    await t.close();
  });

  it("reaches the sandbox only with its certificate configured, over many connections", async () => {
    const trusting = createDispatcher({ trustedCaPem: [t.sandbox.caCertPem], connectTimeoutMs: 5_000, connectionsPerOrigin: 16 });
    const plain = createDispatcher({ connectTimeoutMs: 5_000, connectionsPerOrigin: 1 });
    try {
      const answers = await Promise.all(
        Array.from({ length: 16 }, () => request(`${t.sandbox.url}/common/discovery/v2.0/keys`, { dispatcher: trusting }).then(async (r) => (await r.body.dump(), r.statusCode))),
      );
      assert.deepEqual(new Set(answers), new Set([200]));
      await assert.rejects(request(`${t.sandbox.url}/common/discovery/v2.0/keys`, { dispatcher: plain }), /self.signed|certificate|UNABLE_TO_VERIFY/i);
    } finally {
      await trusting.close();
      await plain.close();
    }
  });
});
