import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * Where the captured Microsoft responses live: the project's own copies, with their sources and licences
 * in the README beside them (copied from the team's shared fixtures, so a clean clone needs nothing else).
 */
export const CAPTURED_DIR = fileURLToPath(new URL("../fixtures/captured", import.meta.url));

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
