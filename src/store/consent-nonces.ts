import type { SqlClient } from "./sql.js";

/**
 * Single-use record of consent-link nonces, in the shared database so a state answered on one replica
 * cannot be replayed on another.
 */
export class ConsentNonceStore {
  constructor(private readonly db: SqlClient) {}

  /** True the first time a nonce is seen, false ever after (until it expires and is purged). */
  async consume(nonce: string, expiresAt: Date): Promise<boolean> {
    await this.db.query("DELETE FROM consent_nonces WHERE expires_at < now() - interval '1 day'");
    const rows = await this.db.query(
      "INSERT INTO consent_nonces (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
      [nonce, expiresAt],
    );
    return rows.length === 1;
  }
}
