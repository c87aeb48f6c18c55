/**
 * Admission control of GraphQL operations, so that a burst cannot starve `/healthz` (or anything else)
 * of the one event loop:
 *
 * - An operation starts in a turn of the event loop of its own (`setImmediate`), one per turn. A warm
 *   operation is CPU work from body to response with no I/O in between; started straight from its
 *   socket's callback, hundreds of them run back to back before the loop reads the next socket, and a
 *   probe that arrived behind them waits seconds. Started one per turn, every request that arrives —
 *   a probe included — is read between two operations.
 * - New connections first: libuv accepts one connection per turn of the loop (libuv#3696), so a flood of
 *   new connections — a probe's among them — is accepted only as fast as the loop turns. While the
 *   last turn accepted a connection, the next operation waits another turn (at most MAX_DEFERRED turns
 *   in a row, so a stream of connections cannot starve the operations).
 * - At most `maxConcurrent` run at once (cold operations wait on upstream calls and overlap), at most
 *   `maxQueued` more wait for a slot, first come first served; beyond that the request is refused at
 *   once (503 with Retry-After) so the client can retry.
 *
 * A slot is taken before the request body is read and released when the response is finished or its
 * connection closes; a waiter whose client goes away leaves the queue. A waiter also gives up after
 * `maxWaitMs`, as its operation would then be close to its own deadline.
 */
export interface AdmissionOptions {
  maxConcurrent: number;
  maxQueued: number;
  maxWaitMs: number;
}

export interface AdmissionStats {
  /** Operations admitted and not yet answered. */
  inFlight: number;
  /** Operations waiting for a slot (or for their turn to start). */
  queued: number;
  /** Requests refused because the queue was full, their wait ran out or the server was closing. */
  refused: number;
}

/** What `acquire` settles with: a slot to release exactly once, or a refusal. */
export type Admission =
  | { admitted: true; release: () => void }
  | { admitted: false; reason: "queue-full" | "wait-timeout" | "closing" | "closed" };

/** Turns an operation start may be put off for new connections before it runs regardless. */
const MAX_DEFERRED = 64;

interface Waiter {
  grant: () => void;
  cancel: (reason: "wait-timeout" | "closing" | "closed") => void;
}

export function createAdmission(options: AdmissionOptions) {
  let inFlight = 0;
  let refused = 0;
  let closing = false;
  let pumpScheduled = false;
  let connectionsSeen = 0;
  let deferred = 0;
  const queue: Waiter[] = [];

  // One start per turn: an immediate scheduled while immediates run waits for the next turn, after the
  // poll phase has read whatever arrived meanwhile.
  const schedulePump = () => {
    if (pumpScheduled || queue.length === 0 || inFlight >= options.maxConcurrent) return;
    pumpScheduled = true;
    setImmediate(pump);
  };
  const pump = () => {
    pumpScheduled = false;
    if (connectionsSeen > 0 && deferred < MAX_DEFERRED) {
      // The listening socket may hold more: let the loop turn (and accept) before the next operation.
      connectionsSeen = 0;
      deferred++;
    } else if (inFlight < options.maxConcurrent) {
      connectionsSeen = 0;
      deferred = 0;
      queue.shift()?.grant();
    }
    schedulePump();
  };
  const slot = () => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      inFlight--;
      schedulePump();
    };
  };

  return {
    /**
     * Waits for a slot and for the operation's turn. `abandoned` fires when the client goes away: the
     * queue holds no request nobody waits for.
     */
    acquire(abandoned: AbortSignal): Promise<Admission> {
      if (closing) {
        refused++;
        return Promise.resolve({ admitted: false, reason: "closing" });
      }
      if (abandoned.aborted) return Promise.resolve({ admitted: false, reason: "closed" });
      if (inFlight + queue.length >= options.maxConcurrent + options.maxQueued) {
        refused++;
        return Promise.resolve({ admitted: false, reason: "queue-full" });
      }
      return new Promise<Admission>((resolve) => {
        const leave = () => {
          clearTimeout(timer);
          abandoned.removeEventListener("abort", onAbort);
          const index = queue.indexOf(waiter);
          if (index >= 0) queue.splice(index, 1);
        };
        const waiter: Waiter = {
          grant: () => {
            leave();
            inFlight++;
            resolve({ admitted: true, release: slot() });
          },
          cancel: (reason) => {
            leave();
            if (reason !== "closed") refused++;
            resolve({ admitted: false, reason });
          },
        };
        const onAbort = () => waiter.cancel("closed");
        const timer = setTimeout(() => waiter.cancel("wait-timeout"), options.maxWaitMs);
        timer.unref();
        abandoned.addEventListener("abort", onAbort, { once: true });
        queue.push(waiter);
        schedulePump();
      });
    },
    /** The server accepted a connection (its `connection` event). */
    noteConnection(): void {
      connectionsSeen++;
    },
    /** Shutting down: every waiter is refused now (the operations running are drained by the server). */
    close(): void {
      closing = true;
      for (const waiter of [...queue]) waiter.cancel("closing");
    },
    stats(): AdmissionStats {
      return { inFlight, queued: queue.length, refused };
    },
  };
}

export type AdmissionControl = ReturnType<typeof createAdmission>;
