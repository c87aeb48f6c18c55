import type { Logger } from "pino";
import type { Loaders } from "../loaders/loaders.js";

/** Per-request GraphQL context: built fresh for every operation, never shared between requests. */
export interface GraphQLContext {
  requestId: string;
  logger: Logger;
  loaders: Loaders;
  /** The operation's deadline: every upstream wait of this request ends by then. */
  operation: { signal: AbortSignal; deadline: number };
}
