import { ConfigError, type Config } from "./config.js";
import { unreachable } from "./errors.js";
import type { DeploymentStore } from "./store/deployment.js";

const when = (date: Date) => date.toISOString().slice(0, 10);

/**
 * Opens the store in the config's mode, or refuses with a ConfigError before anything is seeded or served.
 * Sandbox mode must be chosen, never fallen into: with AZURE_CLIENT_ID missing (a secret that failed to
 * load) a production store would otherwise be served to anonymous admins and filled with emulated tenants.
 * - a store that has run in Azure mode never runs the sandbox, and a sandbox store never runs in Azure
 *   mode (its API keys may have been minted by anonymous callers);
 * - the sandbox on DATABASE_URL needs SANDBOX=true (`checkSandboxChoice`);
 * - the sandbox on a store holding tenants or keys but no recorded mode needs SANDBOX=true.
 * Messages name variables and dates, never a value.
 */
export async function enterDeploymentMode(config: Config, deployment: DeploymentStore): Promise<void> {
  checkSandboxChoice(config);
  const sandbox = config.mode === "sandbox";
  const entry = await deployment.enter(config.mode, { adopt: sandbox ? config.sandbox.chosen : true });
  switch (entry.kind) {
    case "recorded":
    case "same":
      return;
    case "unrecorded-data":
      throw new ConfigError([
        "AZURE_CLIENT_ID is unset, and the store (DATABASE_URL or DATA_DIR) holds tenants or API keys but no recorded mode. " +
          "If it is production, set AZURE_CLIENT_ID and its credential (did a secret fail to load?); " +
          "if it is a sandbox store, start once with SANDBOX=true to record it as one",
      ]);
    case "other-mode":
      if (sandbox) {
        throw new ConfigError([
          `AZURE_CLIENT_ID is unset, but the store (DATABASE_URL or DATA_DIR) has run in Azure mode since ${when(entry.record.firstSeenAt)}: ` +
            "Crosswatch will not open it to the sandbox's anonymous admins. Set AZURE_CLIENT_ID and its credential (did a secret fail to load?), " +
            "or give the sandbox a store of its own (another DATA_DIR or database)",
        ]);
      }
      throw new ConfigError([
        `the store (DATABASE_URL or DATA_DIR) has run in sandbox mode since ${when(entry.record.firstSeenAt)}: its tenants are emulated ` +
          "and its API keys may have been made by anonymous callers. Give the Azure deployment a store of its own (another DATA_DIR or database)",
      ]);
    default:
      return unreachable(entry);
  }
}

/**
 * What the config alone says about sandbox mode, checked before the sandbox starts or a store is opened: an
 * external database (DATABASE_URL) is a deployment's, so the sandbox runs on it only when SANDBOX=true.
 * A start-up rule rather than a loadConfig one, so `npm run keys` still reads a production DATABASE_URL
 * without the Azure app's settings.
 */
export function checkSandboxChoice(config: Config): void {
  if (config.mode === "sandbox" && config.store.databaseUrl && !config.sandbox.chosen) {
    throw new ConfigError([
      "DATABASE_URL is set but AZURE_CLIENT_ID is not: Crosswatch will not run the sandbox (anonymous admin, emulated tenants) " +
        "on an external database unless SANDBOX=true. For production, set AZURE_CLIENT_ID and its credential (did a secret fail to load?)",
    ]);
  }
}
