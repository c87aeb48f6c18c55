import type { SandboxContext } from "./context.js";

/** Placeholder: the incident store (lazy per-tenant generation, activity). Filled in by the incidents work. */
export class IncidentStore {
  constructor(readonly ctx: SandboxContext) {}

  /** Applies `changes` random creates/updates across tenants on the sandbox clock. */
  applyActivity(changes: number): { created: number; updated: number } {
    void changes;
    return { created: 0, updated: 0 };
  }
}
