import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CLASSIFICATIONS, DETERMINATIONS, type Determination } from "../../../src/defender/incident.js";
import { backendUpdateProblem, updateProblem } from "../../../src/defender/update-rules.js";

/** The update page's TruePositive determinations (reference 1.8, "Corrections"), in public spelling. */
const TRUE_POSITIVE: readonly Determination[] = [
  "MULTI_STAGED_ATTACK", "MALICIOUS_USER_ACTIVITY", "COMPROMISED_ACCOUNT", "MALWARE", "PHISHING", "UNWANTED_SOFTWARE", "OTHER",
];

describe("Defender update rules (reference 1.8: determination only with TruePositive)", () => {
  it("lets through TruePositive with each of its determinations, and the writable classifications alone", () => {
    for (const determination of TRUE_POSITIVE) {
      assert.equal(backendUpdateProblem("defender", { classification: "TRUE_POSITIVE", determination }), undefined, determination);
    }
    for (const classification of ["TRUE_POSITIVE", "INFORMATIONAL_EXPECTED_ACTIVITY", "FALSE_POSITIVE"] as const) {
      assert.equal(backendUpdateProblem("defender", { classification, status: "RESOLVED" }), undefined, classification);
    }
    assert.equal(backendUpdateProblem("defender", { status: "IN_PROGRESS", comment: "x" }), undefined);
  });

  it("refuses classification UNKNOWN, naming the field and the writable values", () => {
    const refusal = backendUpdateProblem("defender", { classification: "UNKNOWN" });
    assert.equal(refusal?.field, "classification");
    assert.match(refusal!.hint, /TRUE_POSITIVE, INFORMATIONAL_EXPECTED_ACTIVITY, FALSE_POSITIVE/);
  });

  it("refuses a determination without classification TRUE_POSITIVE in the same update", () => {
    for (const patch of [
      { determination: "MALWARE" as const },
      { classification: "FALSE_POSITIVE" as const, determination: "NOT_MALICIOUS" as const },
      { classification: "INFORMATIONAL_EXPECTED_ACTIVITY" as const, determination: "SECURITY_TESTING" as const },
    ]) {
      const refusal = backendUpdateProblem("defender", patch);
      assert.equal(refusal?.field, "determination", JSON.stringify(patch));
      assert.match(refusal!.message, /only together with classification TRUE_POSITIVE/);
      assert.match(refusal!.hint, /classification: TRUE_POSITIVE/);
    }
  });

  it("refuses every other determination even with TRUE_POSITIVE", () => {
    for (const determination of DETERMINATIONS.filter((d) => !TRUE_POSITIVE.includes(d))) {
      const refusal = backendUpdateProblem("defender", { classification: "TRUE_POSITIVE", determination });
      assert.equal(refusal?.field, "determination", determination);
    }
  });
});

describe("Graph update rules", () => {
  it("writes every classification and every determination but UNKNOWN (each maps onto the published type)", () => {
    for (const classification of CLASSIFICATIONS) assert.equal(backendUpdateProblem("graph", { classification }), undefined);
    for (const determination of DETERMINATIONS.filter((d) => d !== "UNKNOWN")) {
      assert.equal(backendUpdateProblem("graph", { determination }), undefined, determination);
    }
  });

  it("refuses determination UNKNOWN on every backend, pointing at NOT_AVAILABLE", () => {
    for (const backend of ["graph", "defender"] as const) {
      const refusal = backendUpdateProblem(backend, { classification: "TRUE_POSITIVE", determination: "UNKNOWN" });
      assert.equal(refusal?.field, "determination");
      assert.match(refusal!.hint, /NOT_AVAILABLE/);
    }
    assert.equal(updateProblem({ determination: "UNKNOWN" })?.field, "determination");
    assert.equal(updateProblem({ determination: "NOT_AVAILABLE" }), undefined);
  });
});
