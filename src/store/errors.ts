/** Why a store operation refused: stable codes the GraphQL layer maps to public ones. */
export type StoreErrorCode = "INVALID_INPUT" | "ALREADY_EXISTS" | "NOT_FOUND";

export class StoreError extends Error {
  override readonly name = "StoreError";
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    readonly details: { field?: string } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
