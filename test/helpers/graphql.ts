import { request } from "undici";

export interface GraphQLResponse<T = any> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { data?: T; errors?: { message: string; extensions?: Record<string, unknown>; path?: unknown[] }[] };
  text: string;
}

/** POSTs one GraphQL operation to a running Crosswatch over real HTTP. */
export async function postGraphQL<T = any>(
  baseUrl: string,
  query: string,
  variables?: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<GraphQLResponse<T>> {
  const response = await request(`${baseUrl}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, body: JSON.parse(text), text };
}
