import type { Classification, Determination, IncidentPatch, IncidentsBackendName } from "./incident.js";

/**
 * What each backend lets an update write, checked before any upstream call (the resolver with the
 * tenant's backend, and each client again before it sends). A refusal names the input field at fault and
 * tells the caller what to send instead; the resolver turns it into BAD_USER_INPUT with that hint.
 *
 * Defender API (reference 1.8 and "Corrections"; api-update-incidents, corrected April 2024):
 * - writable classifications are TruePositive, InformationalExpectedActivity and FalsePositive;
 * - `determination` is accepted only together with `classification: TruePositive`, and then only one of
 *   the TruePositive determinations.
 * Unconfirmed (reference, "Unconfirmed items" 4): the same page also lists determinations per
 * classification (InformationalExpectedActivity → SecurityTesting…, FalsePositive → Clean…), which
 * contradicts the TruePositive-only sentence, and nobody has shown which one the live service enforces.
 * Crosswatch sends only what both readings accept — TruePositive with one of its determinations — so an
 * update it lets through is valid whichever is true; the sandbox can enforce either
 * (`defenderDeterminationRule`).
 *
 * Microsoft Graph (reference 2.3, 2.5): every public value maps onto a member of the published
 * `alertClassification` / `alertDetermination` types (graph-mapper.ts); no combination rule is documented.
 */

/** Why an update cannot go to a backend: the input field, the message and what to do instead. */
export interface UpdateRefusal {
  field: "classification" | "determination";
  message: string;
  hint: string;
}

/** Classifications the Defender API's update writes (reference 1.8, write side). */
export const DEFENDER_WRITABLE_CLASSIFICATIONS: readonly Classification[] = ["TRUE_POSITIVE", "INFORMATIONAL_EXPECTED_ACTIVITY", "FALSE_POSITIVE"];

/** Determinations the Defender API's update accepts, all with classification TruePositive (reference 1.8). */
export const DEFENDER_TRUE_POSITIVE_DETERMINATIONS: readonly Determination[] = [
  "MULTI_STAGED_ATTACK",
  "MALICIOUS_USER_ACTIVITY",
  "COMPROMISED_ACCOUNT",
  "MALWARE",
  "PHISHING",
  "UNWANTED_SOFTWARE",
  "OTHER",
];

/**
 * Refusals that hold on every backend (checked before the tenant is even looked up): UNKNOWN stands for a
 * value Crosswatch could not read, never for one to write.
 */
export function updateProblem(patch: IncidentPatch): UpdateRefusal | undefined {
  if (patch.determination === "UNKNOWN") {
    return {
      field: "determination",
      message: "determination UNKNOWN cannot be written",
      hint: "UNKNOWN stands for a value Crosswatch could not read. To clear a determination on a Microsoft Graph tenant send NOT_AVAILABLE; otherwise send the determination itself.",
    };
  }
  return undefined;
}

/** Why `patch` cannot be written to `backend`, or undefined when it can. No I/O. */
export function backendUpdateProblem(backend: IncidentsBackendName, patch: IncidentPatch): UpdateRefusal | undefined {
  const general = updateProblem(patch);
  if (general) return general;
  if (backend === "graph") return undefined;
  const { classification, determination } = patch;
  if (classification !== undefined && !DEFENDER_WRITABLE_CLASSIFICATIONS.includes(classification)) {
    return {
      field: "classification",
      message: `the Defender API cannot set classification ${classification}`,
      hint: `This tenant is read through the Defender API, whose update writes only ${DEFENDER_WRITABLE_CLASSIFICATIONS.join(", ")}.`,
    };
  }
  if (determination === undefined) return undefined;
  if (classification !== "TRUE_POSITIVE") {
    return {
      field: "determination",
      message: "the Defender API accepts a determination only together with classification TRUE_POSITIVE",
      hint:
        "This tenant is read through the Defender API: send classification: TRUE_POSITIVE in the same update with one of " +
        `${DEFENDER_TRUE_POSITIVE_DETERMINATIONS.join(", ")}, or leave determination out.`,
    };
  }
  if (!DEFENDER_TRUE_POSITIVE_DETERMINATIONS.includes(determination)) {
    return {
      field: "determination",
      message: `the Defender API cannot set determination ${determination}`,
      hint: `With classification TRUE_POSITIVE the Defender API accepts ${DEFENDER_TRUE_POSITIVE_DETERMINATIONS.join(", ")}.`,
    };
  }
  return undefined;
}
