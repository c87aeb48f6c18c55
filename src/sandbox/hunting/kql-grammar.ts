import * as ohm from "ohm-js";

/**
 * The grammar of the KQL subset the sandbox runs (README "Hunting in the sandbox"), for ohm-js. Anything it
 * does not derive is a syntax error at the rightmost point the parser reached, as the real services answer
 * any query they cannot parse. Operators and keywords are case-sensitive (as in KQL); `//` comments are
 * whitespace.
 */
export const KQL_GRAMMAR_SOURCE = String.raw`
KqlSubset {
  Query = name Stage* ";"?
  Stage = "|" Operator
  Operator = Where | Project | Extend | Summarize | Top | Take | Order

  Where = kwWhere Expr
  Project = kwProject NonemptyListOf<ProjectItem, ",">
  ProjectItem = Assignment | ColumnRef
  Extend = kwExtend NonemptyListOf<Assignment, ",">
  Assignment = name "=" ~"=" Expr
  ColumnRef = name
  Summarize = kwSummarize NonemptyListOf<Aggregate, ","> ByClause?
  Aggregate = name "=" ~"=" AggregateCall  -- named
            | AggregateCall               -- plain
  AggregateCall = "count" "(" ")"          -- count
                | "dcount" "(" Expr ")"    -- dcount
  ByClause = kwBy NonemptyListOf<name, ",">
  Top = kwTop integer kwBy SortKey
  Take = takeKeyword integer
  Order = orderKeyword kwBy NonemptyListOf<SortKey, ",">
  SortKey = Expr direction?

  Expr = Expr kwOr Conjunction  -- or
       | Conjunction
  Conjunction = Conjunction kwAnd Negation  -- and
              | Negation
  Negation = kwNot "(" Expr ")"  -- not
           | Comparison
  Comparison = Additive compareOp Additive  -- compare
             | Additive
  Additive = Additive additiveOp Multiplicative  -- binary
           | Multiplicative
  Multiplicative = Multiplicative multiplicativeOp Unary  -- binary
                 | Unary
  Unary = "-" Primary  -- negate
        | Primary
  Primary = "(" Expr ")"                    -- paren
          | kwDatetime "(" datetimeText ")"  -- datetime
          | name "(" ListOf<Expr, ","> ")"   -- call
          | literal
          | name                            -- column

  additiveOp = "+" | "-"
  multiplicativeOp = "*" | "/" | "%"
  compareOp = "==" | "!=" | "=~" | "!~" | "<=" | ">=" | "<" | ">"
            | wordOp
  wordOp = "!"? ("has" | "contains" | "startswith") ~namePart
  direction = (kwAsc | kwDesc)
  takeKeyword = kwTake | kwLimit
  orderKeyword = kwOrder | kwSort

  literal = string | timespan | number | boolean
  boolean = ("true" | "false") ~namePart
  timespan = digit+ ("." digit+)? timeUnit ~namePart
  timeUnit = "ms" | "d" | "h" | "m" | "s"
  number = digit+ ("." digit+)? ~namePart
  integer = digit+ ~namePart
  string = "\"" doubleChar* "\""  -- double
         | "'" singleChar* "'"   -- single
  doubleChar = "\\" any        -- escaped
             | ~("\"" | "\n") any  -- plain
  singleChar = "\\" any        -- escaped
             | ~("'" | "\n") any   -- plain
  datetimeText = (~(")" | "\n") any)+

  name = ~reserved nameStart namePart*
  nameStart = letter | "_"
  namePart = alnum | "_"
  reserved = ("and" | "or" | "not" | "by" | "asc" | "desc" | "true" | "false" | "has" | "contains" | "startswith") ~namePart

  kwWhere = "where" ~namePart
  kwProject = "project" ~namePart
  kwExtend = "extend" ~namePart
  kwSummarize = "summarize" ~namePart
  kwTop = "top" ~namePart
  kwTake = "take" ~namePart
  kwLimit = "limit" ~namePart
  kwOrder = "order" ~namePart
  kwSort = "sort" ~namePart
  kwBy = "by" ~namePart
  kwAsc = "asc" ~namePart
  kwDesc = "desc" ~namePart
  kwAnd = "and" ~namePart
  kwOr = "or" ~namePart
  kwNot = "not" ~namePart
  kwDatetime = "datetime" ~namePart

  space += comment
  comment = "//" (~"\n" any)*
}
`;

let grammar: ohm.Grammar | undefined;

/** The grammar, built on first use (ohm compiles it in a few milliseconds). */
export function kqlGrammar(): ohm.Grammar {
  grammar ??= ohm.grammar(KQL_GRAMMAR_SOURCE);
  return grammar;
}
