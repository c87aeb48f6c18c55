import { readFileSync } from "node:fs";

/** Where the captured Microsoft responses live (see its README). */
export const CAPTURED_DIR = "/work/shared/fixtures/captured";

/** A captured response body, parsed. */
export function loadCaptured(name: string): any {
  return JSON.parse(readFileSync(`${CAPTURED_DIR}/${name}`, "utf8"));
}

/** `keys` with `key` inserted right after `after` (for fields real responses gained since a capture). */
export function insertAfter(keys: readonly string[], after: string, key: string): string[] {
  const index = keys.indexOf(after);
  if (index < 0) throw new Error(`no key ${after} in ${keys.join(",")}`);
  return [...keys.slice(0, index + 1), key, ...keys.slice(index + 1)];
}

/** The JSON type of a value as the fixtures use them: null, string, number, boolean, array, object. */
export function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** Timestamps as the services print them: UTC, `Z`, 0 to 7 fractional digits (none means no dot). */
export const PRINTED_TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$/;
