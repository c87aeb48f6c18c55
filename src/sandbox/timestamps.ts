/**
 * Timestamps as the incident backends print them: UTC, `Z`, 0 to 7 fractional digits. Internally the
 * sandbox keeps every timestamp as a fixed-width 7-digit string (`2021-03-22T12:34:34.0466667Z`), so
 * timestamps sort and compare as plain strings and no precision is lost; only serialisers trim them.
 */

const TICKS_PER_SECOND = 10_000_000;

/** Fixed-width form of a whole second plus a 7-digit fraction (100 ns ticks). */
export function isoFromParts(epochSeconds: number, fractionTicks: number): string {
  const base = new Date(epochSeconds * 1000).toISOString().slice(0, 19);
  const fixed = `${base}.${String(fractionTicks).padStart(7, "0")}Z`;
  // Flattens V8's rope (cons/sliced) string: a million stored timestamps cost 56 bytes each, not 200.
  fixed.charCodeAt(0);
  return fixed;
}

/** Fixed-width form of a Unix-ms instant, with optional extra sub-millisecond ticks (0–9999). */
export function isoFromMs(ms: number, subMsTicks = 0): string {
  const whole = Math.floor(ms);
  const seconds = Math.floor(whole / 1000);
  const millis = whole - seconds * 1000;
  return isoFromParts(seconds, millis * 10_000 + subMsTicks);
}

/**
 * Rounds to SQL Server `datetime` precision (1/300 s), which is why real incident times end in
 * `…3333Z`, `…6667Z` or a short `.92Z`: the incident store behind the API keeps that type.
 */
export function isoSqlDatetime(ms: number): string {
  let seconds = Math.floor(ms / 1000);
  let k = Math.round(((ms - seconds * 1000) * 300) / 1000);
  if (k === 300) {
    seconds += 1;
    k = 0;
  }
  return isoFromParts(seconds, Math.round((k * TICKS_PER_SECOND) / 300));
}

/** Fixed-width form with a given number (0–7) of significant fractional digits. */
export function isoWithPrecision(ms: number, digits: number, draw: () => number): string {
  const seconds = Math.floor(ms / 1000);
  const unit = 10 ** (7 - digits);
  const fraction = digits === 0 ? 0 : Math.floor(draw() * 10 ** digits) * unit;
  return isoFromParts(seconds, fraction);
}

/** Prints a fixed-width timestamp the way the services do: trailing zeros (and a bare dot) dropped. */
export function trimIso(fixed: string): string {
  const dot = fixed.indexOf(".");
  if (dot < 0) return fixed;
  let end = fixed.length - 1; // index of "Z"
  while (end > dot + 1 && fixed[end - 1] === "0") end--;
  if (end === dot + 1) return `${fixed.slice(0, dot)}Z`;
  return `${fixed.slice(0, end)}Z`;
}

/** Unix ms of a fixed-width timestamp (sub-millisecond ticks dropped). */
export function msOf(fixed: string): number {
  return Date.parse(fixed.slice(0, 23) + "Z");
}

const DATETIME_PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})$/i;

/**
 * Parses an ISO-8601 DateTimeOffset with any number of fractional digits (beyond 7 truncated) and a
 * `Z` or `±hh:mm` offset into the fixed-width UTC form. Returns undefined for anything else (including
 * a missing offset: OData's DateTimeOffset literal requires one).
 */
export function parseDateTimeOffset(text: string): string | undefined {
  const m = DATETIME_PATTERN.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s = "00", frac = "", zone] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return undefined;
  let offsetMinutes = 0;
  if (zone && zone.toUpperCase() !== "Z") {
    const sign = zone.startsWith("-") ? -1 : 1;
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 14 || om > 59) return undefined;
    offsetMinutes = sign * (oh * 60 + om);
  }
  const utcMs = Date.UTC(year, month - 1, day, hour, minute, second) - offsetMinutes * 60_000;
  const check = new Date(Date.UTC(year, month - 1, day));
  if (check.getUTCDate() !== day) return undefined; // e.g. 2024-02-31
  const ticks = Number((frac + "0000000").slice(0, 7));
  return isoFromParts(Math.floor(utcMs / 1000), ticks);
}

/**
 * A strictly increasing clock of fixed-width timestamps. Two updates in the same millisecond still get
 * distinct, ordered `lastUpdateTime`s, so a client polling with `lastUpdateTime gt <max seen>` never
 * skips one.
 */
export class MonotonicStamp {
  private lastSeconds = -Infinity;
  private lastTicks = 0;

  next(nowMs: number): string {
    const whole = Math.floor(nowMs);
    let seconds = Math.floor(whole / 1000);
    let ticks = (whole - seconds * 1000) * 10_000;
    if (seconds < this.lastSeconds || (seconds === this.lastSeconds && ticks <= this.lastTicks)) {
      seconds = this.lastSeconds;
      ticks = this.lastTicks + 1;
      if (ticks >= TICKS_PER_SECOND) {
        seconds += 1;
        ticks = 0;
      }
    }
    this.lastSeconds = seconds;
    this.lastTicks = ticks;
    return isoFromParts(seconds, ticks);
  }
}
