import type { Incident, IncidentAlert } from "../../src/defender/incident.js";

/** A normalised incident with plausible defaults; `overrides` win. */
export function makeIncident(overrides: Partial<Incident> & Pick<Incident, "tenantId" | "incidentId">): Incident {
  const created = overrides.createdTime ?? new Date("2026-01-01T00:00:00Z");
  return {
    backend: "defender",
    name: `Incident ${overrides.incidentId}`,
    severity: "MEDIUM",
    status: "ACTIVE",
    classification: "UNKNOWN",
    determination: "UNKNOWN",
    assignedTo: null,
    createdTime: created,
    lastUpdateTime: overrides.lastUpdateTime ?? created,
    tags: [],
    systemTags: [],
    description: null,
    comments: [],
    alerts: [],
    incidentUri: null,
    redirectIncidentId: null,
    ...overrides,
  };
}

/** A small deterministic PRNG (mulberry32), so generated data and failures are reproducible. */
/** A minimal alert: its id, a title from it, HIGH, nothing else known. */
export function makeAlert(id: string): IncidentAlert {
  return {
    alertId: id,
    title: `alert ${id}`,
    description: null,
    severity: "HIGH",
    status: "New",
    category: null,
    serviceSource: null,
    detectionSource: null,
    mitreTechniques: [],
    createdTime: null,
    lastUpdateTime: null,
    resolvedTime: null,
    firstActivity: null,
    lastActivity: null,
    devices: [],
    entities: [],
  };
}

export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random element of `items`. */
export function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

/** A tenant id that looks like one (a GUID) and sorts by `n`. */
export function tenantGuid(n: number): string {
  return `${n.toString(16).padStart(8, "0")}-0000-4000-8000-000000000000`;
}
