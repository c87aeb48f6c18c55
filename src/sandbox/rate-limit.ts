/** One quota: at most `limit` calls within any `windowSeconds` sliding window. */
export interface RateRule {
  limit: number;
  windowSeconds: number;
}

export type RateDecision = { ok: true } | { ok: false; retryAfterSeconds: number; rule: RateRule };

/**
 * Sliding-log rate limiter keyed by (app, tenant, bucket), the granularity Microsoft documents for the
 * Defender API. A rejected call does not consume quota, so a client that honours Retry-After gets through.
 */
export class SlidingWindowLimiter {
  private readonly calls = new Map<string, number[]>();

  take(key: string, rules: readonly RateRule[], now: number): RateDecision {
    if (rules.length === 0) return { ok: true };
    const longest = Math.max(...rules.map((r) => r.windowSeconds)) * 1000;
    const log = (this.calls.get(key) ?? []).filter((t) => t > now - longest);
    for (const rule of rules) {
      const windowStart = now - rule.windowSeconds * 1000;
      const inWindow = log.filter((t) => t > windowStart);
      if (inWindow.length >= rule.limit) {
        // The call is allowed again once the oldest call still counted against this rule leaves the window.
        const oldest = inWindow[inWindow.length - rule.limit]!;
        const retryAfterSeconds = Math.max(1, Math.ceil((oldest + rule.windowSeconds * 1000 - now) / 1000));
        this.calls.set(key, log);
        return { ok: false, retryAfterSeconds, rule };
      }
    }
    log.push(now);
    this.calls.set(key, log);
    return { ok: true };
  }

  /**
   * Takes one call in several keys at once (a method's quota and a quota it shares), all or none: a call
   * refused by one is charged to none. When several refuse, the answer is the longest wait.
   */
  takeAll(entries: readonly { key: string; rules: readonly RateRule[] }[], now: number): RateDecision {
    let refused: Extract<RateDecision, { ok: false }> | undefined;
    for (const { key, rules } of entries) {
      const decision = this.check(key, rules, now);
      if (!decision.ok && (!refused || decision.retryAfterSeconds > refused.retryAfterSeconds)) refused = decision;
    }
    if (refused) return refused;
    for (const { key, rules } of entries) this.take(key, rules, now);
    return { ok: true };
  }

  /** What `take` would answer, without charging anything. */
  private check(key: string, rules: readonly RateRule[], now: number): RateDecision {
    for (const rule of rules) {
      const inWindow = (this.calls.get(key) ?? []).filter((t) => t > now - rule.windowSeconds * 1000);
      if (inWindow.length >= rule.limit) {
        const oldest = inWindow[inWindow.length - rule.limit]!;
        return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((oldest + rule.windowSeconds * 1000 - now) / 1000)), rule };
      }
    }
    return { ok: true };
  }

  reset(): void {
    this.calls.clear();
  }
}
