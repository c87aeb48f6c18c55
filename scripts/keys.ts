/**
 * `npm run keys -- create|list|revoke …`: API keys from the server's own machine, for the first admin key
 * of a production deployment (which refuses to start without caller authentication) and for automation.
 * It opens the same store the server uses (DATABASE_URL, else DATA_DIR). An embedded PGlite data directory
 * can be opened by one process at a time: with the embedded store, run this while the server is stopped
 * (or use the createApiKey mutation); with PostgreSQL, any time.
 */
import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { CALLER_ROLES, type CallerRole, type Caller } from "../src/auth/caller.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { StoreError } from "../src/store/errors.js";
import { openStore, type Store } from "../src/store/store.js";

const USAGE = `usage:
  npm run keys -- create --name NAME --role READER|RESPONDER|ADMIN (--all-tenants | --tenants ID,ID --tags TAG,TAG) [--expires-days N]
  npm run keys -- list
  npm run keys -- revoke KEY_ID`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command !== "create" && command !== "list" && command !== "revoke") throw new UsageError(command ? `unknown command '${command}'` : "no command");
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: command === "revoke",
    options: {
      name: { type: "string" },
      role: { type: "string" },
      "all-tenants": { type: "boolean" },
      tenants: { type: "string" },
      tags: { type: "string" },
      "expires-days": { type: "string" },
    },
    strict: true,
  });
  const actor: Caller = { kind: "CLI", id: `cli:${userInfo().username}`, name: `${userInfo().username} (keys CLI)`, grants: [] };

  if (command === "create") {
    if (!values.name) throw new UsageError("--name is required");
    const role = values.role?.toUpperCase();
    if (!role || !(CALLER_ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${CALLER_ROLES.join(", ")}`);
    const tenantIds = list(values.tenants);
    const tenantTags = list(values.tags);
    if (values["all-tenants"] && tenantIds.length + tenantTags.length > 0) throw new UsageError("give --all-tenants or --tenants/--tags, not both");
    if (!values["all-tenants"] && tenantIds.length + tenantTags.length === 0) throw new UsageError("give --all-tenants, or --tenants and/or --tags");
    let expiresAt: Date | null = null;
    if (values["expires-days"] !== undefined) {
      const days = Number(values["expires-days"]);
      if (!Number.isInteger(days) || days < 1 || days > 3650) throw new UsageError("--expires-days must be a whole number from 1 to 3650");
      expiresAt = new Date(Date.now() + days * 86_400_000);
    }
    await withStore(async (store) => {
      const scope = { allTenants: values["all-tenants"] === true, tenantIds, tenantTags };
      const detail = { name: values.name, role, scope };
      try {
        const created = await store.apiKeys.create({ name: values.name!, role: role as CallerRole, scope, expiresAt, createdBy: `${actor.kind}:${actor.id}` });
        await store.audit.record({ actor, action: "key.create", target: created.record.id, outcome: "SUCCESS", detail: { ...detail, prefix: created.record.prefix } });
        process.stdout.write(
          `created API key ${created.record.id} (${created.record.name}, ${created.record.role}${expiresAt ? `, expires ${expiresAt.toISOString()}` : ""})\n` +
            `${created.key}\n` +
            "This is the only time the key is shown: store it now (send it as Authorization: Bearer <key>).\n",
        );
      } catch (error) {
        await store.audit.record({ actor, action: "key.create", outcome: error instanceof StoreError ? error.code : "INTERNAL", detail });
        throw error;
      }
    });
    return;
  }

  if (command === "list") {
    await withStore(async (store) => {
      let after: string | undefined;
      const now = Date.now();
      process.stdout.write("id\tprefix\tname\trole\tscope\tstate\tcreated\tlast used\n");
      for (;;) {
        const page = await store.apiKeys.list(500, after);
        for (const key of page.items) {
          const scope = key.scope.allTenants ? "all tenants" : [...key.scope.tenantIds, ...key.scope.tenantTags.map((t) => `tag:${t}`)].join(",");
          const state = key.revokedAt ? "revoked" : key.expiresAt && key.expiresAt.getTime() <= now ? "expired" : "active";
          process.stdout.write(
            `${key.id}\tcwk_${key.prefix}_…\t${key.name}\t${key.role}\t${scope}\t${state}\t${key.createdAt.toISOString()}\t${key.lastUsedAt?.toISOString() ?? "never"}\n`,
          );
        }
        if (!page.hasNextPage) break;
        after = page.cursors.at(-1);
      }
    });
    return;
  }

  const id = positionals[0];
  if (!id || positionals.length > 1) throw new UsageError("revoke takes one key id");
  await withStore(async (store) => {
    try {
      const revoked = await store.apiKeys.revoke(id, `${actor.kind}:${actor.id}`);
      await store.audit.record({ actor, action: "key.revoke", target: revoked.id, outcome: "SUCCESS" });
      process.stdout.write(`revoked API key ${revoked.id} (${revoked.name}) at ${revoked.revokedAt?.toISOString()}\n`);
    } catch (error) {
      await store.audit.record({ actor, action: "key.revoke", target: id.slice(0, 64), outcome: error instanceof StoreError ? error.code : "INTERNAL" });
      throw error;
    }
  });
}

function list(value: string | undefined): string[] {
  return (value ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

async function withStore(work: (store: Store) => Promise<void>): Promise<void> {
  const config = loadConfig();
  if (!config.store.databaseUrl && config.store.dataDir === "memory://") {
    throw new ConfigError(["DATA_DIR=memory:// holds nothing between processes: set DATA_DIR or DATABASE_URL to the server's store"]);
  }
  const store = await openStore({ databaseUrl: config.store.databaseUrl, dataDir: config.store.databaseUrl ? undefined : config.store.dataDir });
  try {
    await work(store);
  } finally {
    await store.close();
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (error: unknown) => {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
      process.exit(2);
    }
    process.stderr.write(`keys: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
