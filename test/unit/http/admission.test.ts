import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as turn, setTimeout as sleep } from "node:timers/promises";
import { createAdmission, type Admission } from "../../../src/http/admission.js";

const admitted = (a: Admission) => {
  assert.ok(a.admitted, `admitted, not ${!a.admitted ? a.reason : ""}`);
  return a.release;
};

describe("admission control", () => {
  it("runs at most maxConcurrent, queues maxQueued in order, refuses the rest, and hands slots on", async () => {
    const admission = createAdmission({ maxConcurrent: 2, maxQueued: 1, maxWaitMs: 60_000 });
    const never = new AbortController().signal;
    const first = admission.acquire(never);
    const second = admission.acquire(never);
    const third = admission.acquire(never);
    assert.deepEqual(await admission.acquire(never), { admitted: false, reason: "queue-full" });
    const releaseFirst = admitted(await first);
    admitted(await second);
    assert.deepEqual(admission.stats(), { inFlight: 2, queued: 1, refused: 1 });
    let thirdSettled = false;
    void third.then(() => (thirdSettled = true));
    await turn();
    assert.equal(thirdSettled, false, "the third waits for a slot");
    releaseFirst();
    releaseFirst(); // a second release is a no-op
    admitted(await third);
    assert.deepEqual(admission.stats(), { inFlight: 2, queued: 0, refused: 1 });
  });

  it("starts one operation per turn of the event loop, and lets a turn pass after a new connection", async () => {
    const admission = createAdmission({ maxConcurrent: 10, maxQueued: 0, maxWaitMs: 60_000 });
    const never = new AbortController().signal;
    const order: string[] = [];
    void admission.acquire(never).then(() => order.push("a"));
    void admission.acquire(never).then(() => order.push("b"));
    await turn();
    assert.deepEqual(order, ["a"]);
    admission.noteConnection();
    await turn();
    assert.deepEqual(order, ["a"], "deferred for the connection");
    await turn();
    await turn();
    assert.deepEqual(order, ["a", "b"]);
  });

  it("drops a waiter whose client went away, refuses one that waited too long, and every waiter on close", async () => {
    const admission = createAdmission({ maxConcurrent: 1, maxQueued: 5, maxWaitMs: 50 });
    const never = new AbortController().signal;
    const release = admitted(await admission.acquire(never));
    const gone = new AbortController();
    const leaving = admission.acquire(gone.signal);
    gone.abort();
    assert.deepEqual(await leaving, { admitted: false, reason: "closed" });
    // The wait timer does not hold the process open (unref); something else must, here.
    const [timedOut] = await Promise.all([admission.acquire(never), sleep(100)]);
    assert.deepEqual(timedOut, { admitted: false, reason: "wait-timeout" });

    const patient = createAdmission({ maxConcurrent: 1, maxQueued: 5, maxWaitMs: 60_000 });
    admitted(await patient.acquire(never));
    const waiting = patient.acquire(never);
    patient.close();
    assert.deepEqual(await waiting, { admitted: false, reason: "closing" });
    assert.deepEqual(await patient.acquire(never), { admitted: false, reason: "closing" });
    assert.equal(patient.stats().queued, 0);
    release();
  });
});
