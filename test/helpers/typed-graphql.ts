import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { print } from "graphql";
import { postGraphQL } from "./graphql.js";

export interface TypedResult<TResult> {
  status: number;
  data: TResult | undefined;
  errors: { message: string; extensions?: Record<string, unknown>; path?: unknown[] }[] | undefined;
}

/**
 * Runs a generated TypedDocumentNode (src/generated/) against a running Crosswatch over real HTTP: the
 * variables are checked against the operation at compile time, and the result comes back typed.
 */
export async function execute<TResult, TVariables>(
  baseUrl: string,
  document: TypedDocumentNode<TResult, TVariables>,
  ...[variables]: TVariables extends Record<string, never> ? [variables?: TVariables] : [variables: TVariables]
): Promise<TypedResult<TResult>> {
  const response = await postGraphQL<TResult>(baseUrl, print(document), variables as Record<string, unknown> | undefined);
  return { status: response.status, data: response.body.data ?? undefined, errors: response.body.errors };
}
