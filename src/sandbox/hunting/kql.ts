import type { Node as OhmNode } from "ohm-js";
import { kqlGrammar } from "./kql-grammar.js";

/**
 * A small, documented subset of KQL (README "Hunting in the sandbox"): parse with a real grammar
 * (kql-grammar.ts, ohm-js), check names and types against the table's schema, then evaluate over rows in
 * memory. Everything outside the subset is a `KqlError` the routes turn into the service's 400.
 */

/** Column types in the spelling both hunting APIs print in their schema. */
export type ColumnType = "String" | "DateTime" | "Int32" | "Int64" | "Double" | "Boolean" | "Dynamic" | "TimeSpan";

export interface Column {
  name: string;
  type: ColumnType;
}

/** A point in time; `text` keeps the source's own 7-digit spelling when the value came from a table. */
export class KqlDateTime {
  constructor(
    readonly ms: number,
    readonly text?: string,
  ) {}
  toJSON(): string {
    return this.text ?? new Date(this.ms).toISOString().replace(/\.(\d{3})Z$/, ".$10000Z");
  }
}

/** A duration (`7d`, `now() - Timestamp`). Printed as KQL prints timespans, `[d.]hh:mm:ss[.fffffff]`. */
export class KqlTimespan {
  constructor(readonly ms: number) {}
  toJSON(): string {
    const sign = this.ms < 0 ? "-" : "";
    let rest = Math.abs(this.ms);
    const days = Math.floor(rest / 86_400_000);
    rest -= days * 86_400_000;
    const hours = Math.floor(rest / 3_600_000);
    rest -= hours * 3_600_000;
    const minutes = Math.floor(rest / 60_000);
    rest -= minutes * 60_000;
    const seconds = Math.floor(rest / 1000);
    const fraction = Math.round((rest - seconds * 1000) * 10_000);
    const pad = (n: number) => String(n).padStart(2, "0");
    return `${sign}${days > 0 ? `${days}.` : ""}${pad(hours)}:${pad(minutes)}:${pad(seconds)}${fraction > 0 ? `.${String(fraction).padStart(7, "0")}` : ""}`;
  }
}

/** A `dynamic` value (JSON arrays and objects); compared and searched by its JSON text. */
export class KqlDynamic {
  constructor(readonly value: unknown) {}
  toJSON(): unknown {
    return this.value;
  }
  toString(): string {
    return JSON.stringify(this.value);
  }
}

export type Value = string | number | boolean | null | KqlDateTime | KqlTimespan | KqlDynamic;
export type Row = Record<string, Value>;

export interface Table {
  schema: Column[];
  rows: Row[];
}

/**
 * A query the subset refuses. `kind` "syntax": the parser stopped at `token` (line and 1-based column);
 * "semantic": it parsed, but names something that does not exist or mixes types.
 */
export class KqlError extends Error {
  override readonly name = "KqlError";
  constructor(
    readonly kind: "syntax" | "semantic",
    message: string,
    readonly line: number,
    readonly column: number,
    readonly token: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------- AST

export type Expr =
  | { kind: "literal"; value: Value; pos: number }
  | { kind: "column"; name: string; pos: number }
  | { kind: "call"; name: string; args: Expr[]; pos: number }
  | { kind: "binary"; op: string; left: Expr; right: Expr; pos: number }
  | { kind: "not"; operand: Expr; pos: number }
  | { kind: "negate"; operand: Expr; pos: number };

export interface SortKey {
  expr: Expr;
  direction: "asc" | "desc";
}

export type Aggregate = { name: string | undefined; fn: "count"; pos: number } | { name: string | undefined; fn: "dcount"; arg: Expr; pos: number };

export type Stage =
  | { op: "where"; predicate: Expr; pos: number }
  | { op: "project"; items: { name: string; expr: Expr }[]; pos: number }
  | { op: "extend"; items: { name: string; expr: Expr }[]; pos: number }
  | { op: "summarize"; aggregates: Aggregate[]; by: { name: string; pos: number }[]; pos: number }
  | { op: "top"; count: number; key: SortKey; pos: number }
  | { op: "take"; count: number; pos: number }
  | { op: "order"; keys: SortKey[]; pos: number };

export interface Query {
  table: string;
  tablePos: number;
  stages: Stage[];
  source: string;
}

const TIME_UNITS: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

let semantics: ReturnType<ReturnType<typeof kqlGrammar>["createSemantics"]> | undefined;

function astSemantics() {
  if (semantics) return semantics;
  const pos = (node: OhmNode) => node.source.startIdx;
  const list = (node: OhmNode) => node.asIteration().children.map((c: OhmNode) => c.ast());
  semantics = kqlGrammar().createSemantics();
  semantics.addOperation("ast", {
    Query(table, stages, _semi) {
      return { table: table.sourceString, tablePos: pos(table), stages: stages.children.map((s) => s.ast()) };
    },
    Stage(_bar, operator) {
      return operator.ast();
    },
    Where(kw, expr) {
      return { op: "where", predicate: expr.ast(), pos: pos(kw) };
    },
    Project(kw, items) {
      return { op: "project", items: list(items), pos: pos(kw) };
    },
    Extend(kw, items) {
      return { op: "extend", items: list(items), pos: pos(kw) };
    },
    Assignment(name, _eq, expr) {
      return { name: name.sourceString, expr: expr.ast() };
    },
    ColumnRef(name) {
      return { name: name.sourceString, expr: { kind: "column", name: name.sourceString, pos: pos(name) } };
    },
    Summarize(kw, aggregates, by) {
      const byClause = by.children[0];
      return { op: "summarize", aggregates: list(aggregates), by: byClause ? byClause.ast() : [], pos: pos(kw) };
    },
    Aggregate_named(name, _eq, call) {
      return { ...call.ast(), name: name.sourceString };
    },
    Aggregate_plain(call) {
      return { ...call.ast(), name: undefined };
    },
    AggregateCall_count(fn, _open, _close) {
      return { fn: "count", pos: pos(fn) };
    },
    AggregateCall_dcount(fn, _open, arg, _close) {
      return { fn: "dcount", arg: arg.ast(), pos: pos(fn) };
    },
    ByClause(_kw, names) {
      return names.asIteration().children.map((n: OhmNode) => ({ name: n.sourceString, pos: pos(n) }));
    },
    Top(kw, count, _by, key) {
      return { op: "top", count: Number(count.sourceString), key: key.ast(), pos: pos(kw) };
    },
    Take(kw, count) {
      return { op: "take", count: Number(count.sourceString), pos: pos(kw) };
    },
    Order(kw, _by, keys) {
      return { op: "order", keys: list(keys), pos: pos(kw) };
    },
    SortKey(expr, direction) {
      // KQL sorts descending unless told otherwise (order by, sort by and top alike).
      return { expr: expr.ast(), direction: direction.children[0]?.sourceString === "asc" ? "asc" : "desc" };
    },
    Expr_or(left, op, right) {
      return { kind: "binary", op: "or", left: left.ast(), right: right.ast(), pos: pos(op) };
    },
    Conjunction_and(left, op, right) {
      return { kind: "binary", op: "and", left: left.ast(), right: right.ast(), pos: pos(op) };
    },
    Negation_not(kw, _open, expr, _close) {
      return { kind: "not", operand: expr.ast(), pos: pos(kw) };
    },
    Comparison_compare(left, op, right) {
      return { kind: "binary", op: op.sourceString, left: left.ast(), right: right.ast(), pos: pos(op) };
    },
    Additive_binary(left, op, right) {
      return { kind: "binary", op: op.sourceString, left: left.ast(), right: right.ast(), pos: pos(op) };
    },
    Multiplicative_binary(left, op, right) {
      return { kind: "binary", op: op.sourceString, left: left.ast(), right: right.ast(), pos: pos(op) };
    },
    Unary_negate(minus, operand) {
      return { kind: "negate", operand: operand.ast(), pos: pos(minus) };
    },
    Primary_paren(_open, expr, _close) {
      return expr.ast();
    },
    Primary_datetime(kw, _open, text, _close) {
      const raw = text.sourceString.trim();
      // KQL datetimes are UTC: a date alone is midnight, a time without a zone is read as UTC.
      const iso = /^\d{4}-\d{2}-\d{2}$/.test(raw) ? `${raw}T00:00:00Z` : /([zZ]|[+-]\d\d:?\d\d)$/.test(raw) ? raw : `${raw}Z`;
      const ms = /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(iso.replace(" ", "T")) : Number.NaN;
      if (Number.isNaN(ms)) return { kind: "literal", value: null, pos: pos(kw), invalid: raw };
      return { kind: "literal", value: new KqlDateTime(ms), pos: pos(kw) };
    },
    Primary_call(name, _open, args, _close) {
      return { kind: "call", name: name.sourceString, args: list(args), pos: pos(name) };
    },
    Primary_column(name) {
      return { kind: "column", name: name.sourceString, pos: pos(name) };
    },
    boolean(_word) {
      return { kind: "literal", value: this.sourceString === "true", pos: pos(this) };
    },
    timespan(whole, _dot, fraction, unit) {
      const amount = Number(`${whole.sourceString}${fraction.sourceString ? `.${fraction.sourceString}` : ""}`);
      return { kind: "literal", value: new KqlTimespan(amount * TIME_UNITS[unit.sourceString]!), pos: pos(this) };
    },
    number(_whole, _dot, _fraction) {
      return { kind: "literal", value: Number(this.sourceString), pos: pos(this) };
    },
    string_double(_open, chars, _close) {
      return { kind: "literal", value: unescape(chars.sourceString), pos: pos(this) };
    },
    string_single(_open, chars, _close) {
      return { kind: "literal", value: unescape(chars.sourceString), pos: pos(this) };
    },
    _iter(...children) {
      return children.map((c) => c.ast());
    },
  });
  return semantics;
}

function unescape(raw: string): string {
  return raw.replace(/\\(.)/g, (_m, c: string) => ({ n: "\n", t: "\t", r: "\r" })[c] ?? c);
}

/** Line and 1-based column of an offset. */
function locate(source: string, offset: number): { line: number; column: number } {
  const before = source.slice(0, offset);
  const lines = before.split("\n");
  return { line: lines.length, column: lines[lines.length - 1]!.length + 1 };
}

/** The token that starts at `offset`: a word, a number, a two-character operator or one character. */
function tokenAt(source: string, offset: number): string {
  const rest = source.slice(offset).replace(/^\s+/, "");
  if (rest === "") return "<end of query>";
  return /^([A-Za-z_][A-Za-z0-9_]*|\d+(\.\d+)?|==|!=|=~|!~|<=|>=|\S)/.exec(rest)![0];
}

function syntaxError(source: string, offset: number): KqlError {
  // Skip the whitespace the parser stood on, so the position names the offending token itself.
  const skipped = offset + (/^\s*/.exec(source.slice(offset))?.[0].length ?? 0);
  const { line, column } = locate(source, Math.min(skipped, source.length));
  const token = tokenAt(source, offset);
  // The wording of Kusto's SYN0002 as Log Analytics and advanced hunting print it; the column counting of the
  // hunting APIs is unconfirmed (assumed 1-based, at the token's start).
  return new KqlError("syntax", `Query could not be parsed at '${token}' on line [${line},${column}]`, line, column, token);
}

function semanticError(source: string, offset: number, message: string): KqlError {
  const { line, column } = locate(source, offset);
  return new KqlError("semantic", message, line, column, tokenAt(source, offset));
}

/** Parses a query of the subset, or throws a syntax `KqlError` naming where the parser stopped. */
export function parseKql(source: string): Query {
  const match = kqlGrammar().match(source);
  if (match.failed()) throw syntaxError(source, match.getRightmostFailurePosition());
  const ast = astSemantics()(match).ast() as Omit<Query, "source">;
  const query = { ...ast, source };
  findInvalidDatetime(query);
  return query;
}

function findInvalidDatetime(query: Query): void {
  const visit = (expr: Expr): void => {
    const bad = (expr as { invalid?: string }).invalid;
    if (bad !== undefined) throw semanticError(query.source, expr.pos, `Invalid datetime literal: '${bad}'.`);
    if (expr.kind === "binary") {
      visit(expr.left);
      visit(expr.right);
    } else if (expr.kind === "call") expr.args.forEach(visit);
    else if (expr.kind === "not" || expr.kind === "negate") visit(expr.operand);
  };
  for (const stage of query.stages) {
    if (stage.op === "where") visit(stage.predicate);
    if (stage.op === "project" || stage.op === "extend") stage.items.forEach((i) => visit(i.expr));
    if (stage.op === "top") visit(stage.key.expr);
    if (stage.op === "order") stage.keys.forEach((k) => visit(k.expr));
  }
}

// ---------------------------------------------------------------------------------------- evaluation

/** What a query runs against: its tables, the clock, and a lower bound on `Timestamp`. */
export interface RunContext {
  tables: (name: string) => Table | undefined;
  /** Unix ms of `now()`. */
  now: number;
  /** Rows of the source table older than this (Unix ms) are not seen (the service's data window). */
  since?: number;
}

type Compiled = { type: ColumnType; eval: (row: Row) => Value };

const NUMERIC: readonly ColumnType[] = ["Int32", "Int64", "Double"];

function isNumeric(type: ColumnType): boolean {
  return NUMERIC.includes(type);
}

function asText(value: Value): string {
  if (value === null) return "";
  if (typeof value === "string") return value;
  if (value instanceof KqlDateTime || value instanceof KqlTimespan) return String(value.toJSON());
  return String(value);
}

/** The word boundaries of KQL's `has`: the term must not continue with letters or digits on either side. */
function hasTerm(haystack: string, term: string): boolean {
  const h = haystack.toLowerCase();
  const t = term.toLowerCase();
  if (t === "") return true;
  for (let i = h.indexOf(t); i >= 0; i = h.indexOf(t, i + 1)) {
    const before = i === 0 ? "" : h[i - 1]!;
    const after = h[i + t.length] ?? "";
    if (!/[a-z0-9]/.test(before) && !/[a-z0-9]/.test(after)) return true;
  }
  return false;
}

/** Orders two values of one type; null sorts below everything. */
function compareValues(a: Value, b: Value): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1;
  if (a instanceof KqlDateTime && b instanceof KqlDateTime) return a.ms - b.ms;
  if (a instanceof KqlTimespan && b instanceof KqlTimespan) return a.ms - b.ms;
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
  const x = asText(a);
  const y = asText(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function literalType(value: Value): ColumnType {
  if (value === null) return "String";
  if (typeof value === "string") return "String";
  if (typeof value === "boolean") return "Boolean";
  if (typeof value === "number") return Number.isInteger(value) ? "Int64" : "Double";
  if (value instanceof KqlDateTime) return "DateTime";
  if (value instanceof KqlTimespan) return "TimeSpan";
  return "Dynamic";
}

class Compiler {
  constructor(
    private readonly query: Query,
    private readonly ctx: RunContext,
  ) {}

  fail(pos: number, message: string): never {
    throw semanticError(this.query.source, pos, message);
  }

  compile(expr: Expr, schema: Map<string, ColumnType>): Compiled {
    switch (expr.kind) {
      case "literal": {
        const value = expr.value;
        return { type: literalType(value), eval: () => value };
      }
      case "column": {
        const type = schema.get(expr.name);
        if (!type) this.fail(expr.pos, `Failed to resolve scalar expression named '${expr.name}'`);
        const name = expr.name;
        return { type, eval: (row) => row[name] ?? null };
      }
      case "not": {
        const operand = this.compile(expr.operand, schema);
        return { type: "Boolean", eval: (row) => operand.eval(row) !== true };
      }
      case "negate": {
        const operand = this.compile(expr.operand, schema);
        if (operand.type === "TimeSpan") return { type: "TimeSpan", eval: (row) => { const v = operand.eval(row); return v instanceof KqlTimespan ? new KqlTimespan(-v.ms) : null; } };
        if (!isNumeric(operand.type)) this.fail(expr.pos, `The operator '-' cannot be applied to a value of type '${operand.type}'`);
        return { type: operand.type, eval: (row) => { const v = operand.eval(row); return typeof v === "number" ? -v : null; } };
      }
      case "call":
        return this.call(expr, schema);
      case "binary":
        return this.binary(expr, schema);
    }
  }

  private call(expr: Extract<Expr, { kind: "call" }>, schema: Map<string, ColumnType>): Compiled {
    const args = expr.args.map((a) => this.compile(a, schema));
    const arity = (n: number) => {
      if (args.length !== n) this.fail(expr.pos, `Function '${expr.name}' expects ${n} argument(s), got ${args.length}`);
    };
    const now = this.ctx.now;
    switch (expr.name) {
      case "now":
        arity(0);
        return { type: "DateTime", eval: () => new KqlDateTime(now) };
      case "ago": {
        arity(1);
        if (args[0]!.type !== "TimeSpan") this.fail(expr.pos, "Function 'ago' expects a timespan argument");
        const span = args[0]!;
        return { type: "DateTime", eval: (row) => { const v = span.eval(row); return v instanceof KqlTimespan ? new KqlDateTime(now - v.ms) : null; } };
      }
      case "strcat":
        if (args.length === 0) this.fail(expr.pos, "Function 'strcat' expects at least 1 argument");
        return { type: "String", eval: (row) => args.map((a) => asText(a.eval(row))).join("") };
      case "tolower":
      case "toupper": {
        arity(1);
        const upper = expr.name === "toupper";
        return { type: "String", eval: (row) => { const t = asText(args[0]!.eval(row)); return upper ? t.toUpperCase() : t.toLowerCase(); } };
      }
      case "tostring":
        arity(1);
        return { type: "String", eval: (row) => asText(args[0]!.eval(row)) };
      case "strlen":
        arity(1);
        return { type: "Int64", eval: (row) => asText(args[0]!.eval(row)).length };
      case "isempty":
      case "isnotempty": {
        arity(1);
        const empty = expr.name === "isempty";
        return { type: "Boolean", eval: (row) => (asText(args[0]!.eval(row)) === "") === empty };
      }
      default:
        return this.fail(expr.pos, `Failed to resolve scalar expression named '${expr.name}'`);
    }
  }

  private binary(expr: Extract<Expr, { kind: "binary" }>, schema: Map<string, ColumnType>): Compiled {
    const left = this.compile(expr.left, schema);
    const right = this.compile(expr.right, schema);
    const l = left.eval;
    const r = right.eval;
    const op = expr.op;
    switch (op) {
      case "and":
        return { type: "Boolean", eval: (row) => l(row) === true && r(row) === true };
      case "or":
        return { type: "Boolean", eval: (row) => l(row) === true || r(row) === true };
      case "==":
      case "!=":
      case "<":
      case "<=":
      case ">":
      case ">=": {
        this.checkComparable(expr, left.type, right.type);
        const test = { "==": (c: number) => c === 0, "!=": (c: number) => c !== 0, "<": (c: number) => c < 0, "<=": (c: number) => c <= 0, ">": (c: number) => c > 0, ">=": (c: number) => c >= 0 }[op];
        return {
          type: "Boolean",
          eval: (row) => {
            const a = l(row);
            const b = r(row);
            // Null compares false with everything (except != against a value), as in KQL.
            if (a === null || b === null) return op === "!=" ? a !== b : false;
            return test(compareValues(a, b));
          },
        };
      }
      case "=~":
      case "!~": {
        const equal = op === "=~";
        return { type: "Boolean", eval: (row) => (asText(l(row)).toLowerCase() === asText(r(row)).toLowerCase()) === equal };
      }
      case "has":
      case "!has":
      case "contains":
      case "!contains":
      case "startswith":
      case "!startswith": {
        const negated = op.startsWith("!");
        const word = negated ? op.slice(1) : op;
        const test =
          word === "has"
            ? hasTerm
            : word === "contains"
              ? (h: string, t: string) => h.toLowerCase().includes(t.toLowerCase())
              : (h: string, t: string) => h.toLowerCase().startsWith(t.toLowerCase());
        return { type: "Boolean", eval: (row) => test(asText(l(row)), asText(r(row))) !== negated };
      }
      case "+":
      case "-":
      case "*":
      case "/":
      case "%":
        return this.arithmetic(expr, op, left, right);
      default:
        return this.fail(expr.pos, `Unsupported operator '${op}'`);
    }
  }

  private checkComparable(expr: Extract<Expr, { kind: "binary" }>, a: ColumnType, b: ColumnType): void {
    if (a === b || (isNumeric(a) && isNumeric(b))) return;
    if (expr.left.kind === "literal" && expr.left.value === null) return;
    if (expr.right.kind === "literal" && expr.right.value === null) return;
    this.fail(expr.pos, `Cannot compare values of types ${a.toLowerCase()} and ${b.toLowerCase()}. Try adding explicit casts`);
  }

  private arithmetic(expr: Extract<Expr, { kind: "binary" }>, op: string, left: Compiled, right: Compiled): Compiled {
    const l = left.eval;
    const r = right.eval;
    if (isNumeric(left.type) && isNumeric(right.type)) {
      const double = left.type === "Double" || right.type === "Double";
      const type: ColumnType = double ? "Double" : "Int64";
      return {
        type,
        eval: (row) => {
          const a = l(row);
          const b = r(row);
          if (typeof a !== "number" || typeof b !== "number") return null;
          switch (op) {
            case "+":
              return a + b;
            case "-":
              return a - b;
            case "*":
              return a * b;
            case "/":
              if (b === 0) return null;
              return double ? a / b : Math.trunc(a / b);
            default:
              return b === 0 ? null : a % b;
          }
        },
      };
    }
    if (left.type === "DateTime" && right.type === "TimeSpan" && (op === "+" || op === "-")) {
      const sign = op === "+" ? 1 : -1;
      return { type: "DateTime", eval: (row) => { const a = l(row); const b = r(row); return a instanceof KqlDateTime && b instanceof KqlTimespan ? new KqlDateTime(a.ms + sign * b.ms) : null; } };
    }
    if (left.type === "DateTime" && right.type === "DateTime" && op === "-") {
      return { type: "TimeSpan", eval: (row) => { const a = l(row); const b = r(row); return a instanceof KqlDateTime && b instanceof KqlDateTime ? new KqlTimespan(a.ms - b.ms) : null; } };
    }
    if (left.type === "TimeSpan" && right.type === "TimeSpan" && (op === "+" || op === "-")) {
      const sign = op === "+" ? 1 : -1;
      return { type: "TimeSpan", eval: (row) => { const a = l(row); const b = r(row); return a instanceof KqlTimespan && b instanceof KqlTimespan ? new KqlTimespan(a.ms + sign * b.ms) : null; } };
    }
    return this.fail(expr.pos, `The operator '${op}' cannot be applied to values of types ${left.type.toLowerCase()} and ${right.type.toLowerCase()}`);
  }
}

function sortRows(rows: Row[], keys: { eval: (row: Row) => Value; direction: "asc" | "desc" }[]): Row[] {
  const decorated = rows.map((row, index) => ({ row, index, values: keys.map((k) => k.eval(row)) }));
  decorated.sort((a, b) => {
    for (let i = 0; i < keys.length; i++) {
      const c = compareValues(a.values[i]!, b.values[i]!);
      if (c !== 0) return keys[i]!.direction === "asc" ? c : -c;
    }
    return a.index - b.index;
  });
  return decorated.map((d) => d.row);
}

/**
 * Runs a parsed query: the source table (cut at `ctx.since` on `Timestamp`), then each stage in order.
 * Throws a semantic `KqlError` for an unknown table, column or function, or mismatched types.
 */
export function runKql(query: Query, ctx: RunContext): Table {
  const source = ctx.tables(query.table);
  if (!source) throw semanticError(query.source, query.tablePos, `Failed to resolve table or column expression named '${query.table}'`);
  const compiler = new Compiler(query, ctx);
  let schema = source.schema.slice();
  const since = ctx.since;
  let rows =
    since === undefined
      ? source.rows
      : source.rows.filter((row) => {
          const t = row.Timestamp;
          return !(t instanceof KqlDateTime) || t.ms >= since;
        });
  const types = () => new Map(schema.map((c) => [c.name, c.type]));
  for (const stage of query.stages) {
    switch (stage.op) {
      case "where": {
        const predicate = compiler.compile(stage.predicate, types());
        rows = rows.filter((row) => predicate.eval(row) === true);
        break;
      }
      case "project":
      case "extend": {
        const known = types();
        const compiled = stage.items.map((item) => ({ name: item.name, ...compiler.compile(item.expr, known) }));
        const kept: Column[] = stage.op === "project" ? [] : schema.filter((c) => !compiled.some((x) => x.name === c.name));
        const seen = new Set<string>();
        for (const item of compiled) {
          if (seen.has(item.name)) compiler.fail(stage.pos, `A column named '${item.name}' is defined more than once`);
          seen.add(item.name);
        }
        if (stage.op === "extend") {
          // Extend keeps the column order, replacing a column in place when the name exists.
          const next: Column[] = schema.map((c) => {
            const replaced = compiled.find((x) => x.name === c.name);
            return replaced ? { name: c.name, type: replaced.type } : c;
          });
          for (const item of compiled) if (!schema.some((c) => c.name === item.name)) next.push({ name: item.name, type: item.type });
          schema = next;
        } else {
          schema = [...kept, ...compiled.map((x) => ({ name: x.name, type: x.type }))];
        }
        const names = schema.map((c) => c.name);
        rows = rows.map((row) => {
          const values = new Map(compiled.map((x) => [x.name, x.eval(row)]));
          const out: Row = {};
          for (const name of names) out[name] = values.has(name) ? values.get(name)! : (row[name] ?? null);
          return out;
        });
        break;
      }
      case "summarize": {
        const known = types();
        for (const key of stage.by) if (!known.has(key.name)) compiler.fail(key.pos, `Failed to resolve scalar expression named '${key.name}'`);
        const aggregates = stage.aggregates.map((agg) => {
          if (agg.fn === "count") return { name: agg.name ?? "count_", arg: undefined };
          const arg = compiler.compile(agg.arg, known);
          const defaultName = agg.arg.kind === "column" ? `dcount_${agg.arg.name}` : "dcount_";
          return { name: agg.name ?? defaultName, arg };
        });
        const groups = new Map<string, { keys: Value[]; count: number; distinct: Set<string>[] }>();
        for (const row of rows) {
          const keys = stage.by.map((k) => row[k.name] ?? null);
          const id = JSON.stringify(keys);
          let group = groups.get(id);
          if (!group) {
            group = { keys, count: 0, distinct: aggregates.map(() => new Set<string>()) };
            groups.set(id, group);
          }
          group.count++;
          aggregates.forEach((agg, i) => {
            if (!agg.arg) return;
            const v = agg.arg.eval(row);
            if (v !== null) group!.distinct[i]!.add(JSON.stringify(v));
          });
        }
        // `summarize count()` without `by` answers one row even over no rows, as KQL does.
        if (stage.by.length === 0 && groups.size === 0) groups.set("[]", { keys: [], count: 0, distinct: aggregates.map(() => new Set()) });
        schema = [...stage.by.map((k) => ({ name: k.name, type: known.get(k.name)! })), ...aggregates.map((a) => ({ name: a.name, type: "Int64" as const }))];
        rows = [...groups.values()].map((group) => {
          const out: Row = {};
          stage.by.forEach((k, i) => (out[k.name] = group.keys[i]!));
          aggregates.forEach((agg, i) => (out[agg.name] = agg.arg ? group.distinct[i]!.size : group.count));
          return out;
        });
        break;
      }
      case "top": {
        const key = compiler.compile(stage.key.expr, types());
        rows = sortRows(rows, [{ eval: key.eval, direction: stage.key.direction }]).slice(0, stage.count);
        break;
      }
      case "take":
        rows = rows.slice(0, stage.count);
        break;
      case "order": {
        const known = types();
        rows = sortRows(
          rows,
          stage.keys.map((k) => ({ eval: compiler.compile(k.expr, known).eval, direction: k.direction })),
        );
        break;
      }
    }
  }
  return { schema, rows };
}
