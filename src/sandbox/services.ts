import type { SandboxContext } from "./context.js";
import type { IncidentStore } from "./incidents-store.js";
import type { SigningKey } from "./tokens.js";

/** What every route module of the sandbox receives. */
export interface SandboxServices {
  ctx: SandboxContext;
  signingKey: SigningKey;
  incidents: IncidentStore;
}
