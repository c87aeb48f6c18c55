import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { IncidentRecord } from "./incident-model.js";
import type { SandboxTenant } from "./tenants.js";

/**
 * What a sandbox keeps across restarts (`SandboxOptions.stateFile`): what a person or a test changed,
 * applied over the seed at start. Not faults, latency, counters, rate windows or the app's credentials:
 * those are knobs of one run.
 */
export interface SandboxState {
  version: 1;
  /** The seed the generated tenants and incidents came from; another seed makes this state meaningless. */
  seed: number;
  /** The incident generator's "now", so regenerated incidents are the very ones edited before. */
  anchorMs: number;
  /** How far the control API moved the sandbox clock. */
  clockOffsetMs: number;
  /** Tenants created through `POST /_sandbox/tenants`, whole. */
  addedTenants: SandboxTenant[];
  /** Consent of every tenant whose consent changed (admin consent, the control API), by tenant id. */
  consents: Record<string, SandboxTenant["consent"]>;
  /** Per tenant: every incident changed or created, whole, and the next incident id. */
  incidents: Record<string, { nextId: number; records: IncidentRecord[] }>;
}

/** The state file cannot be used: the sandbox refuses to start rather than contradict the registry. */
export class SandboxStateError extends Error {
  override readonly name = "SandboxStateError";
}

/**
 * Reads a state file: undefined when there is none. A file that is not this version's JSON, or was written
 * with another seed, is a `SandboxStateError` naming the file and what to do — not a fresh start: the
 * registry beside it may say GRANTED for consents only this file remembers, and starting afresh would
 * silently bring back exactly that contradiction. The message quotes nothing from the file.
 */
export async function readSandboxState(path: string, seed: number): Promise<SandboxState | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new SandboxStateError(`cannot read the sandbox state file ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  const remedy = "delete it (or move it away) to start the sandbox from its seed: its consents, added tenants and incident edits are then lost";
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new SandboxStateError(`the sandbox state file ${path} is not valid JSON (damaged?): ${remedy}`);
  }
  if (!isState(value)) throw new SandboxStateError(`the sandbox state file ${path} is not a version 1 sandbox state: ${remedy}`);
  if (value.seed !== seed) {
    throw new SandboxStateError(`the sandbox state file ${path} was written with SANDBOX_SEED=${value.seed}, not ${seed}: start with that seed, or ${remedy}`);
  }
  return value;
}

function isState(value: unknown): value is SandboxState {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  const isRecord = (x: unknown) => typeof x === "object" && x !== null && !Array.isArray(x);
  return (
    v.version === 1 &&
    typeof v.seed === "number" &&
    typeof v.anchorMs === "number" &&
    typeof v.clockOffsetMs === "number" &&
    Array.isArray(v.addedTenants) &&
    v.addedTenants.every((t) => isRecord(t) && typeof (t as Record<string, unknown>).id === "string") &&
    isRecord(v.consents) &&
    isRecord(v.incidents) &&
    Object.values(v.incidents as Record<string, unknown>).every(
      (e) => isRecord(e) && typeof (e as Record<string, unknown>).nextId === "number" && Array.isArray((e as Record<string, unknown>).records),
    )
  );
}

/**
 * Writes the state file after changes, debounced (`delayMs` after the first change of a burst), and
 * atomically: a temporary file beside it, then a rename, so a crash leaves the old state or the new one,
 * never half of one. `flush()` writes what is pending now (at close).
 */
export class SandboxStateWriter {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;
  /** The last write's failure, if any (also given to `onError`, and thrown by `flush`). */
  lastError: Error | undefined;

  constructor(
    private readonly path: string,
    private readonly snapshot: () => SandboxState,
    private readonly options: { delayMs?: number; onError?: (error: Error) => void } = {},
  ) {}

  /** Notes a change; the file is written `delayMs` later (one write for a burst of changes). */
  changed(): void {
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, this.options.delayMs ?? 250);
    this.timer.unref();
  }

  /** Writes now if anything changed since the last write, and waits for it. Throws the write's failure. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    await this.write();
    if (this.lastError) throw this.lastError;
  }

  private write(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      const temporary = `${this.path}.${process.pid}.tmp`;
      try {
        await mkdir(dirname(this.path), { recursive: true });
        await writeFile(temporary, JSON.stringify(this.snapshot()), { mode: 0o600 });
        await rename(temporary, this.path);
        this.lastError = undefined;
      } catch (error) {
        this.dirty = true;
        this.lastError = error as Error;
        this.options.onError?.(this.lastError);
        await rm(temporary, { force: true }).catch(() => undefined);
      }
    });
    return this.writing;
  }
}
