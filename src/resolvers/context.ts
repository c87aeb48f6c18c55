import type { Logger } from "pino";

/** Per-request GraphQL context: built fresh for every operation, never shared between requests. */
export interface GraphQLContext {
  requestId: string;
  logger: Logger;
}
