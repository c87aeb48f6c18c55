/**
 * The two resource applications the partner app requests tokens for, with the app roles each defines.
 * Values from reference/defender-api.md sections 1.1, 1.2 and 2.1.
 */
export const RESOURCES = {
  defender: {
    key: "defender",
    appId: "8ee8fdad-f234-4243-8f3b-15c294843740",
    uri: "https://api.security.microsoft.com",
    displayName: "Microsoft Threat Protection",
    roles: ["Incident.Read.All", "Incident.ReadWrite.All", "AdvancedHunting.Read.All", "CustomDetections.ReadWrite.All"],
    readRoles: ["Incident.Read.All", "Incident.ReadWrite.All"],
    writeRoles: ["Incident.ReadWrite.All"],
    /** `POST /api/advancedhunting/run` (reference 1.1, 1.12). */
    huntRoles: ["AdvancedHunting.Read.All"],
  },
  graph: {
    key: "graph",
    appId: "00000003-0000-0000-c000-000000000000",
    uri: "https://graph.microsoft.com",
    displayName: "Microsoft Graph",
    roles: ["SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All", "SecurityAlert.Read.All", "ThreatHunting.Read.All"],
    readRoles: ["SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All"],
    writeRoles: ["SecurityIncident.ReadWrite.All"],
    /** `POST /security/runHuntingQuery` (Graph's runHuntingQuery page: ThreatHunting.Read.All, application). */
    huntRoles: ["ThreatHunting.Read.All"],
  },
} as const;

export type ResourceKey = keyof typeof RESOURCES;
export type Resource = (typeof RESOURCES)[ResourceKey];

/**
 * Finds the resource a v1 `resource=` value or a v2 `scope=` value names: its App ID URI (with or without a
 * trailing slash) or its appId GUID. Returns undefined for anything else.
 */
export function findResource(identifier: string): Resource | undefined {
  const normalised = identifier.trim().replace(/\/+$/, "").toLowerCase();
  for (const resource of Object.values(RESOURCES)) {
    if (normalised === resource.uri.toLowerCase() || normalised === resource.appId) return resource;
  }
  return undefined;
}
