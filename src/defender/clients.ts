import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import type { TokenProvider } from "../auth/token-provider.js";
import { DefenderIncidentsClient } from "./defender-client.js";
import { GraphIncidentsClient } from "./graph-client.js";
import type { RetryPolicy, UpstreamObserver, UpstreamTimeouts } from "./http.js";
import { InProcessRateBudget, type InProcessRateBudgetOptions, type RateBudget } from "./rate-budget.js";

export interface IncidentsClientsOptions {
  /** The process's one dispatcher (`createDispatcher`): TLS trust, keep-alive, connect timeout. */
  dispatcher: Dispatcher;
  tokenProvider: TokenProvider;
  /** `config.upstream.defenderApiBase`. */
  defenderApiBase: string;
  /** `config.upstream.graphApiBase`, version segment included. */
  graphApiBase: string;
  logger?: Logger;
  /** A ready budget (e.g. Redis-backed), or options of the in-process one both clients share. */
  budgets?: RateBudget | InProcessRateBudgetOptions;
  timeouts?: Partial<UpstreamTimeouts>;
  retry?: Partial<RetryPolicy>;
  /** Told of every attempt sent upstream (metrics). */
  observe?: UpstreamObserver;
}

export interface IncidentsClients {
  defender: DefenderIncidentsClient;
  graph: GraphIncidentsClient;
  /** Shared by both: one concurrency cap for every upstream incident call of the process. */
  budget: RateBudget;
}

/** Builds both incident backends over one dispatcher, token provider and rate budget. Opens nothing. */
export function createIncidentsClients(options: IncidentsClientsOptions): IncidentsClients {
  const budget = isRateBudget(options.budgets) ? options.budgets : new InProcessRateBudget(options.budgets ?? {});
  const common = {
    dispatcher: options.dispatcher,
    tokenProvider: options.tokenProvider,
    budget,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.timeouts ? { timeouts: options.timeouts } : {}),
    ...(options.retry ? { retry: options.retry } : {}),
    ...(options.observe ? { observe: options.observe } : {}),
  };
  return {
    defender: new DefenderIncidentsClient({ ...common, baseUrl: options.defenderApiBase }),
    graph: new GraphIncidentsClient({ ...common, baseUrl: options.graphApiBase }),
    budget,
  };
}

function isRateBudget(value: RateBudget | InProcessRateBudgetOptions | undefined): value is RateBudget {
  return typeof (value as RateBudget | undefined)?.acquire === "function";
}
