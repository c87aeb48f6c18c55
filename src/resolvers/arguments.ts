import { badInput } from "../errors.js";
import { MAX_ASSIGNEE_LENGTH, MAX_CURSOR_LENGTH, MAX_SEARCH_LENGTH } from "../incidents/incident-query.js";

/**
 * The longest value of each kind of string argument, in UTF-16 code units (README, "Limits and
 * hardening"). Every string a caller sends is bounded before it reaches the store, the audit log, a token
 * request or an upstream call: a megabyte of text is refused in microseconds instead of being matched,
 * stored or logged.
 */
export const STRING_LIMITS = {
  /** `filter.search` of incidents and tenants. */
  search: MAX_SEARCH_LENGTH,
  /** An incident's owner, in a filter or an update. */
  assignedTo: MAX_ASSIGNEE_LENGTH,
  /** `after`: cursors Crosswatch issues are far shorter. */
  cursor: MAX_CURSOR_LENGTH,
  /** A tenant's display name (the registry's own bound). */
  displayName: 256,
  /** An API key's name (the key store's own bound). */
  keyName: 128,
  /** A tenant tag (the registry's `TAG` pattern allows 64). */
  tenantTag: 64,
  /** An incident tag set by `updateIncident`. */
  incidentTag: 128,
  /**
   * A comment added by `updateIncident`. Neither the Defender API nor Graph documents a limit; 4,000
   * characters is far beyond a triage note and well inside what both accept.
   */
  comment: 4000,
  /** An id argument (tenant GUIDs are 36 characters, API key ids 36, incident ids at most 64). */
  id: 64,
  /** Free-text audit filters (`actorId`, `outcome`, `action`). */
  auditText: 256,
} as const;

/** Most tags in a tag filter (`incidents(tenantTags:)`, `tenants(filter: { tags })`). */
export const MAX_FILTER_TAGS = 100;

/** BAD_USER_INPUT naming `field` and the bound when `value` is longer than `max`; null and undefined pass. */
export function checkLength(value: string | null | undefined, field: string, max: number): void {
  if (value !== undefined && value !== null && value.length > max) throw badInput(`${field} is at most ${max} characters`, field);
}

/**
 * BAD_USER_INPUT naming `field` when a list has more than `maxItems` entries or any entry is longer than
 * `maxLength`; null and undefined pass. The count is checked first, so a huge list costs nothing more.
 */
export function checkLengths(values: readonly string[] | null | undefined, field: string, maxItems: number, maxLength: number): void {
  if (values === undefined || values === null) return;
  if (values.length > maxItems) throw badInput(`${field} takes at most ${maxItems} values`, field);
  for (const value of values) {
    if (value.length > maxLength) throw badInput(`each of ${field} is at most ${maxLength} characters`, field);
  }
}
