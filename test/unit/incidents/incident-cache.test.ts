import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeCacheEntry, encodeCacheEntry, type TenantIncidentsEntry } from "../../../src/incidents/incident-cache.js";
import { makeIncident } from "../../helpers/incident-factory.js";

const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";

describe("cache entry codec (for caches outside the process)", () => {
  it("round-trips an entry with every nested Date restored", () => {
    const t = (s: string) => new Date(`2026-04-0${s}T10:00:00.123Z`);
    const entry: TenantIncidentsEntry = {
      backend: "graph",
      watermark: t("3"),
      fetchedAt: t("4"),
      fullFetchedAt: t("2"),
      incidents: [
        makeIncident({
          tenantId: TENANT,
          incidentId: "7",
          name: "2026-04-01T10:00:00Z is not a date here",
          createdTime: t("1"),
          lastUpdateTime: t("3"),
          comments: [{ comment: "c", createdBy: null, createdTime: t("2") }],
          alerts: [
            {
              alertId: "a",
              title: null,
              description: null,
              severity: "LOW",
              status: null,
              category: null,
              serviceSource: null,
              detectionSource: null,
              mitreTechniques: [],
              createdTime: t("1"),
              lastUpdateTime: null,
              resolvedTime: null,
              firstActivity: t("1"),
              lastActivity: t("2"),
              devices: [{ deviceId: "d", aadDeviceId: null, dnsName: null, osPlatform: null, osBuild: null, riskScore: null, healthStatus: null, firstSeen: t("1") }],
              entities: [],
            },
          ],
        }),
      ],
    };
    const decoded = decodeCacheEntry(encodeCacheEntry(entry));
    assert.deepEqual(decoded, entry);
    assert.equal(typeof decoded.incidents[0]!.name, "string");
  });

  it("round-trips a sweep under way (where a large tenant's first load goes on), its Dates restored", () => {
    const entry: TenantIncidentsEntry = {
      backend: "graph",
      watermark: new Date("2026-04-03T10:00:00.123Z"),
      fetchedAt: new Date("2026-04-04T10:00:00Z"),
      incidents: [makeIncident({ tenantId: TENANT, incidentId: "1" })],
      sweep: { startedAt: new Date("2026-04-04T10:00:00Z"), resumeFrom: new Date("2026-04-03T10:00:00.123Z"), listedIds: ["1"] },
    };
    assert.deepEqual(decodeCacheEntry(encodeCacheEntry(entry)), entry);
    const first: TenantIncidentsEntry = { ...entry, sweep: { startedAt: new Date("2026-04-04T10:00:00Z"), resumeFrom: null } };
    assert.deepEqual(decodeCacheEntry(encodeCacheEntry(first)), first);
  });

  it("refuses text that is not an entry", () => {
    assert.throws(() => decodeCacheEntry("{"), SyntaxError);
    assert.throws(() => decodeCacheEntry('{"incidents":[]}'), TypeError);
  });
});
