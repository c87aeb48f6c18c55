import { parseDateTimeOffset } from "./timestamps.js";

/**
 * The slice of OData v4 the incident backends speak: `$filter` with comparisons, `and`/`or`/`not`,
 * parentheses and `in`; `$top`/`$skip`; `$orderby`. Parsing is strict and every rejection carries a
 * message naming what was wrong, because a silent mismatch against the real services is the bug this
 * sandbox exists to catch.
 */

/** A rejected query option. The API layers turn it into their own 400 body. */
export class ODataError extends Error {
  override readonly name = "ODataError";
  constructor(message: string) {
    super(message);
  }
}

export type PropertyType =
  | { kind: "datetime" }
  | { kind: "string" }
  /**
   * An enum: `members` in display spelling, lowest first (order comparisons use it); `aliases` maps other
   * lower-cased spellings to a member.
   */
  | { kind: "enum"; typeName: string; members: readonly string[]; aliases?: Readonly<Record<string, string>> };

export interface FilterSchema {
  /** Filterable properties by exact (case-sensitive) name. */
  properties: Readonly<Record<string, PropertyType>>;
  /** The entity type's name in messages, e.g. `microsoft.graph.security.incident`. */
  entityName: string;
  /**
   * `lenient` (legacy Defender) also takes datetimes quoted (`'2024-01-01T00:00:00Z'`) or in the OData v3
   * `datetime'…'` form; `strict` (Graph) rejects a string compared with a DateTimeOffset as Graph does.
   */
  datetimeLiterals: "lenient" | "strict";
}

export type ComparisonOperator = "eq" | "ne" | "gt" | "ge" | "lt" | "le";

/** A literal after type checking against its property: datetimes fixed-width, enums their member. */
export type FilterValue = { type: "null" } | { type: "datetime"; value: string } | { type: "string"; value: string } | { type: "enum"; value: string; rank: number };

export type FilterNode =
  | { kind: "and" | "or"; left: FilterNode; right: FilterNode }
  | { kind: "not"; operand: FilterNode }
  | { kind: "compare"; property: string; op: ComparisonOperator; value: FilterValue }
  | { kind: "in"; property: string; values: FilterValue[] };

/** What a predicate reads: a property's current value (fixed-width datetimes, enum members) or null. */
export type PropertyReader = (property: string) => string | null;

type Token =
  | { kind: "lparen"; pos: number }
  | { kind: "rparen"; pos: number }
  | { kind: "comma"; pos: number }
  | { kind: "string"; value: string; prefix: string | undefined; pos: number }
  | { kind: "word"; value: string; pos: number }
  | { kind: "bare"; value: string; pos: number };

const OPERATORS = new Set(["eq", "ne", "gt", "ge", "lt", "le"]);
const OPERATOR_NAMES: Record<ComparisonOperator, string> = {
  eq: "Equal",
  ne: "NotEqual",
  gt: "GreaterThan",
  ge: "GreaterThanOrEqual",
  lt: "LessThan",
  le: "LessThanOrEqual",
};
const FLIPPED: Record<ComparisonOperator, ComparisonOperator> = { eq: "eq", ne: "ne", gt: "lt", ge: "le", lt: "gt", le: "ge" };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r") {
      i++;
      continue;
    }
    if (ch === "(") tokens.push({ kind: "lparen", pos: i++ });
    else if (ch === ")") tokens.push({ kind: "rparen", pos: i++ });
    else if (ch === ",") tokens.push({ kind: "comma", pos: i++ });
    else if (ch === "'") {
      const { value, end } = readString(text, i);
      tokens.push({ kind: "string", value, prefix: undefined, pos: i });
      i = end;
    } else if (/[A-Za-z_]/.test(ch)) {
      const start = i;
      while (i < text.length && /[A-Za-z0-9_./]/.test(text[i]!)) i++;
      const word = text.slice(start, i);
      if (text[i] === "'") {
        // A typed literal: datetime'…' (OData v3) or a qualified enum, microsoft.graph.security.x'…'.
        const { value, end } = readString(text, i);
        tokens.push({ kind: "string", value, prefix: word, pos: start });
        i = end;
      } else {
        tokens.push({ kind: "word", value: word, pos: start });
      }
    } else if (/[0-9+\-]/.test(ch)) {
      const start = i;
      while (i < text.length && /[0-9A-Za-z:.+\-]/.test(text[i]!)) i++;
      tokens.push({ kind: "bare", value: text.slice(start, i), pos: start });
    } else {
      throw new ODataError(`Syntax error: character '${ch}' is not valid at position ${i} in '${text}'.`);
    }
  }
  return tokens;
}

function readString(text: string, start: number): { value: string; end: number } {
  let value = "";
  let i = start + 1;
  for (;;) {
    if (i >= text.length) throw new ODataError(`There is an unterminated string literal at position ${start} in '${text}'.`);
    const ch = text[i]!;
    if (ch === "'") {
      if (text[i + 1] === "'") {
        value += "'";
        i += 2;
        continue;
      }
      return { value, end: i + 1 };
    }
    value += ch;
    i++;
  }
}

/**
 * Parses and type-checks a `$filter` expression against a schema.
 *
 * @throws ODataError with a message naming the problem (syntax, unknown property, incompatible types,
 *   unknown enum member, unsupported function)
 */
export function parseFilter(text: string, schema: FilterSchema): FilterNode {
  if (text.trim() === "") throw new ODataError("The $filter expression must not be empty.");
  const tokens = tokenize(text);
  let index = 0;
  const peek = (): Token | undefined => tokens[index];
  const atWord = (word: string): boolean => {
    const t = peek();
    return t !== undefined && t.kind === "word" && t.value === word;
  };
  const fail = (message: string): never => {
    throw new ODataError(message);
  };
  const describe = (t: Token | undefined): string => {
    if (t === undefined) return "the end of the expression";
    const shown =
      t.kind === "lparen" ? "(" : t.kind === "rparen" ? ")" : t.kind === "comma" ? "," : t.kind === "string" ? `'${t.value}'` : t.value;
    return `'${shown}' at position ${t.pos}`;
  };

  const parseOr = (): FilterNode => {
    let left = parseAnd();
    while (atWord("or")) {
      index++;
      left = { kind: "or", left, right: parseAnd() };
    }
    return left;
  };
  const parseAnd = (): FilterNode => {
    let left = parseUnary();
    while (atWord("and")) {
      index++;
      left = { kind: "and", left, right: parseUnary() };
    }
    return left;
  };
  const parseUnary = (): FilterNode => {
    if (atWord("not")) {
      index++;
      return { kind: "not", operand: parseUnary() };
    }
    const t = peek();
    if (t?.kind === "lparen") {
      index++;
      const inner = parseOr();
      if (peek()?.kind !== "rparen") fail(`')' expected at ${describe(peek())} in '${text}'.`);
      index++;
      return inner;
    }
    return parseComparison();
  };
  const parseOperand = (): Token => {
    const t = peek();
    if (t === undefined || t.kind === "rparen" || t.kind === "comma") {
      return fail(`Expression expected at ${describe(t)} in '${text}'.`);
    }
    if (t.kind === "lparen") return fail(`Unexpected '(' at position ${t.pos} in '${text}'.`);
    index++;
    if (t.kind === "word" && peek()?.kind === "lparen" && !OPERATORS.has(t.value) && t.value !== "in") {
      fail(`The function '${t.value}' is not supported in $filter on ${schema.entityName}.`);
    }
    return t;
  };
  const parseComparison = (): FilterNode => {
    const left = parseOperand();
    const opToken = peek();
    if (opToken?.kind === "word" && opToken.value === "in") {
      index++;
      const property = propertyName(left);
      if (!property) return fail(`The left operand of 'in' must be a property, found ${describe(left)}.`);
      const type = propertyType(property);
      if (peek()?.kind !== "lparen") fail(`'(' expected after 'in' at ${describe(peek())} in '${text}'.`);
      index++;
      const values: FilterValue[] = [];
      for (;;) {
        const item = parseOperand();
        values.push(literalValue(item, property, type, "eq"));
        const next = peek();
        if (next?.kind === "comma") {
          index++;
          continue;
        }
        if (next?.kind === "rparen") {
          index++;
          break;
        }
        fail(`',' or ')' expected at ${describe(next)} in '${text}'.`);
      }
      return { kind: "in", property, values };
    }
    if (opToken?.kind !== "word" || !OPERATORS.has(opToken.value)) {
      return fail(
        opToken === undefined
          ? `A comparison operator (eq, ne, gt, ge, lt, le) was expected after ${describe(left)} at the end of '${text}'.`
          : `A comparison operator (eq, ne, gt, ge, lt, le) was expected at ${describe(opToken)} in '${text}'.`,
      );
    }
    index++;
    let op = opToken.value as ComparisonOperator;
    const right = parseOperand();
    let property = propertyName(left);
    let literal = right;
    if (!property) {
      property = propertyName(right);
      literal = left;
      op = FLIPPED[op];
    } else if (propertyName(right)) {
      const other = propertyName(right)!;
      if (!(other in schema.properties)) {
        if (schema.properties[property]?.kind === "datetime") {
          fail(`'${other}' at position ${right.pos} is not a valid DateTimeOffset for '${property}': use ISO 8601 with a time zone, e.g. 2024-05-01T00:00:00Z.`);
        }
        fail(`'${other}' at position ${right.pos} is not a property of '${schema.entityName}'; string literals must be in single quotes, e.g. '${other}'.`);
      }
      fail(`Comparing two properties (${describe(left)} and ${describe(right)}) is not supported.`);
    }
    if (!property) return fail(`A comparison needs a property on one side, found ${describe(left)} and ${describe(right)}.`);
    const type = propertyType(property);
    return { kind: "compare", property, op, value: literalValue(literal, property, type, op) };
  };
  /** A word token that is not a keyword names a property. */
  const propertyName = (t: Token): string | undefined =>
    t.kind === "word" && !["null", "true", "false", "and", "or", "not"].includes(t.value) ? t.value : undefined;
  const propertyType = (name: string): PropertyType => {
    const type = schema.properties[name];
    if (type) return type;
    const supported = Object.keys(schema.properties).join(", ");
    const near = Object.keys(schema.properties).find((p) => p.toLowerCase() === name.toLowerCase());
    return fail(
      near
        ? `Could not find a property named '${name}' on type '${schema.entityName}'. Property names are case-sensitive; did you mean '${near}'?`
        : `Could not find a filterable property named '${name}' on type '${schema.entityName}'. $filter supports: ${supported}.`,
    );
  };
  const literalValue = (t: Token, property: string, type: PropertyType, op: ComparisonOperator): FilterValue => {
    if (t.kind === "word") {
      if (t.value === "null") return { type: "null" };
      if (t.value === "true" || t.value === "false") {
        return fail(incompatible(type, "Edm.Boolean", op));
      }
      return fail(`Unexpected '${t.value}' at position ${t.pos} in '${text}'.`);
    }
    if (t.kind !== "string" && t.kind !== "bare") return fail(`A literal was expected at ${describe(t)} in '${text}'.`);
    switch (type.kind) {
      case "datetime": {
        if (t.kind === "string") {
          const prefix = t.prefix?.toLowerCase();
          const typed = prefix === "datetime" || prefix === "datetimeoffset";
          if (t.prefix !== undefined && !typed) fail(`Unknown literal type '${t.prefix}' at position ${t.pos} in '${text}'.`);
          if (schema.datetimeLiterals === "strict" && !typed) fail(incompatible(type, "Edm.String", op));
        }
        const parsed = parseDateTimeOffset(t.value);
        if (!parsed) {
          return fail(
            /^\d+$/.test(t.value)
              ? incompatible(type, "Edm.Int32", op)
              : `'${t.value}' is not a valid DateTimeOffset for '${property}': use ISO 8601 with a time zone, e.g. 2024-05-01T00:00:00Z (0 to 7 fractional digits; a '+' offset must be sent as %2B, since '+' in a URL decodes to a space).`,
          );
        }
        return { type: "datetime", value: parsed };
      }
      case "string":
        if (t.kind === "bare") return fail(t.value.match(/^\d{4}-/) ? incompatible(type, "Edm.DateTimeOffset", op) : incompatible(type, "Edm.Int32", op));
        if (t.prefix !== undefined) fail(`Unknown literal type '${t.prefix}' at position ${t.pos} in '${text}'.`);
        return { type: "string", value: t.value };
      case "enum": {
        if (t.kind === "bare") return fail(incompatible(type, /^\d{4}-/.test(t.value) ? "Edm.DateTimeOffset" : "Edm.Int32", op));
        if (t.prefix !== undefined && !t.prefix.toLowerCase().endsWith(type.typeName.toLowerCase())) {
          fail(`The enum type '${t.prefix}' does not match '${type.typeName}' of property '${property}'.`);
        }
        const lower = t.value.toLowerCase();
        let rank = type.members.findIndex((m) => m.toLowerCase() === lower);
        if (rank < 0 && type.aliases?.[lower] !== undefined) {
          const member = type.aliases[lower]!;
          rank = type.members.indexOf(member);
        }
        if (rank < 0) {
          return fail(`The string '${t.value}' is not a valid enumeration type constant for '${property}'. Valid values: ${type.members.join(", ")}.`);
        }
        return { type: "enum", value: type.members[rank]!, rank };
      }
    }
  };
  const incompatible = (type: PropertyType, found: string, op: ComparisonOperator): string =>
    `A binary operator with incompatible types was detected. Found operand types '${edmName(type)}' and '${found}' for operator kind '${OPERATOR_NAMES[op]}'.`;

  const tree = parseOr();
  if (index < tokens.length) fail(`Syntax error at ${describe(peek())} in '${text}': 'and', 'or' or the end of the expression was expected.`);
  return tree;
}

function edmName(type: PropertyType): string {
  return type.kind === "datetime" ? "Edm.DateTimeOffset" : type.kind === "string" ? "Edm.String" : type.typeName;
}

/**
 * Evaluates a parsed filter. Strings compare case-insensitively (the services' SQL collation); enums by
 * member, ordered by their rank; any comparison with a null side other than eq/ne is false, as in OData.
 */
export function evaluateFilter(node: FilterNode, schema: FilterSchema, read: PropertyReader): boolean {
  switch (node.kind) {
    case "and":
      return evaluateFilter(node.left, schema, read) && evaluateFilter(node.right, schema, read);
    case "or":
      return evaluateFilter(node.left, schema, read) || evaluateFilter(node.right, schema, read);
    case "not":
      return !evaluateFilter(node.operand, schema, read);
    case "in":
      return node.values.some((value) => compare(schema.properties[node.property]!, read(node.property), "eq", value));
    case "compare":
      return compare(schema.properties[node.property]!, read(node.property), node.op, node.value);
  }
}

function compare(type: PropertyType, actual: string | null, op: ComparisonOperator, expected: FilterValue): boolean {
  if (expected.type === "null" || actual === null) {
    const bothNull = expected.type === "null" && actual === null;
    if (op === "eq") return bothNull;
    if (op === "ne") return !bothNull;
    return false;
  }
  let diff: number;
  if (expected.type === "enum" && type.kind === "enum") {
    const rank = type.members.findIndex((m) => m.toLowerCase() === actual.toLowerCase());
    diff = rank - expected.rank;
  } else if (expected.type === "datetime") {
    diff = actual < expected.value ? -1 : actual > expected.value ? 1 : 0;
  } else {
    const a = actual.toLowerCase();
    const b = expected.value.toLowerCase();
    diff = a < b ? -1 : a > b ? 1 : 0;
  }
  switch (op) {
    case "eq":
      return diff === 0;
    case "ne":
      return diff !== 0;
    case "gt":
      return diff > 0;
    case "ge":
      return diff >= 0;
    case "lt":
      return diff < 0;
    case "le":
      return diff <= 0;
  }
}

/**
 * Splits a raw query string into OData options. `+` decodes to a space (form encoding, which Microsoft's
 * own samples rely on), option names are matched case-insensitively (OData 4.01), and an option given
 * twice, or a `$`-option outside `allowed`, is rejected. Parameters without `$` are ignored.
 */
export function parseQueryOptions(rawQuery: string, allowed: readonly string[]): Map<string, string> {
  const options = new Map<string, string>();
  if (rawQuery === "") return options;
  for (const part of rawQuery.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const rawName = eq < 0 ? part : part.slice(0, eq);
    const rawValue = eq < 0 ? "" : part.slice(eq + 1);
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent(rawName.replace(/\+/g, " "));
      value = decodeURIComponent(rawValue.replace(/\+/g, " "));
    } catch {
      throw new ODataError(`The query string contains an invalid percent-encoding in '${part}'.`);
    }
    if (!name.startsWith("$")) continue;
    const key = name.toLowerCase();
    if (!allowed.includes(key)) {
      throw new ODataError(`The query parameter '${name}' is not supported. Supported query options: ${allowed.join(", ")}.`);
    }
    if (options.has(key)) throw new ODataError(`The query parameter '${name}' is specified more than once; it must be specified at most once.`);
    options.set(key, value);
  }
  return options;
}

/** Parses a `$top`/`$skip` value: a non-negative integer. */
export function parseNonNegativeInteger(name: string, value: string): number {
  if (!/^\d+$/.test(value.trim())) {
    throw new ODataError(`Invalid value '${value}' for query option '${name}': a non-negative integer is required.`);
  }
  const n = Number(value.trim());
  if (!Number.isSafeInteger(n) || n > 2_147_483_647) throw new ODataError(`The value '${value}' of '${name}' is out of range.`);
  return n;
}

export interface OrderByClause {
  property: string;
  direction: "asc" | "desc";
}

/** Parses `$orderby`: comma-separated `property [asc|desc]`, each property from `sortable`. */
export function parseOrderBy(value: string, sortable: readonly string[], entityName: string): OrderByClause[] {
  const clauses: OrderByClause[] = [];
  for (const raw of value.split(",")) {
    const parts = raw.trim().split(/\s+/).filter((p) => p !== "");
    if (parts.length === 0 || parts.length > 2) throw new ODataError(`Invalid $orderby clause '${raw.trim()}': expected 'property [asc|desc]'.`);
    const [property, dir = "asc"] = parts as [string, string?];
    if (!sortable.includes(property)) {
      throw new ODataError(`The property '${property}' cannot be used in $orderby on type '${entityName}'. Sortable properties: ${sortable.join(", ")}.`);
    }
    const direction = dir.toLowerCase();
    if (direction !== "asc" && direction !== "desc") throw new ODataError(`Invalid $orderby direction '${dir}': use asc or desc.`);
    if (clauses.some((c) => c.property === property)) throw new ODataError(`The property '${property}' appears more than once in $orderby.`);
    clauses.push({ property, direction });
  }
  return clauses;
}

/**
 * `records` in `$orderby` order (a new array; with `limit`, only the first `limit` of them, found without
 * sorting the rest — a page deep in a large tenant costs one pass). Ties fall back to `tieBreak` in the
 * last clause's direction, so equal keys come in one stable order on every request (paging by watermark
 * with `$skip` over a boundary relies on it). `keyOf` gives a record's sort key for one property
 * (fixed-width timestamps as text, ranks and ids as numbers); keys are read once per record.
 */
export function sortByOrderBy<T>(
  records: readonly T[],
  clauses: readonly OrderByClause[],
  tieBreak: string,
  keyOf: (record: T, property: string) => string | number,
  limit?: number,
): T[] {
  const all = [...clauses, { property: tieBreak, direction: clauses.at(-1)?.direction ?? "asc" } satisfies OrderByClause];
  const signs = all.map((c) => (c.direction === "asc" ? 1 : -1));
  type Keyed = { record: T; keys: (string | number)[] };
  const compare = (a: Keyed, b: Keyed): number => {
    for (let i = 0; i < signs.length; i++) {
      const x = a.keys[i]!;
      const y = b.keys[i]!;
      if (x !== y) return x < y ? -signs[i]! : signs[i]!;
    }
    return 0;
  };
  const keyed = records.map((record): Keyed => ({ record, keys: all.map((c) => keyOf(record, c.property)) }));
  if (limit === undefined || limit >= keyed.length) return keyed.sort(compare).map((k) => k.record);
  const best: Keyed[] = [];
  if (limit <= 0) return [];
  for (const item of keyed) {
    if (best.length === limit && compare(item, best[limit - 1]!) >= 0) continue;
    let lo = 0;
    let hi = best.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compare(best[mid]!, item) <= 0) lo = mid + 1;
      else hi = mid;
    }
    best.splice(lo, 0, item);
    if (best.length > limit) best.pop();
  }
  return best.map((k) => k.record);
}

/**
 * Whether a list request goes past the skip ceiling: `$top + $skip` above `ceiling` (null: no ceiling).
 * Graph documents `$top + $skip ≤ 6000` for security alerts; deep `$skip` on its security lists is
 * reported to stop returning pages (Elastic integrations #20234/#20348).
 */
export function pastSkipCeiling(top: number, skip: number, ceiling: number | null): boolean {
  return ceiling !== null && skip > 0 && top + skip > ceiling;
}
