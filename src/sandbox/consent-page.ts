import { aadTimestamp, type AadError, type RequestIds } from "./entra-errors.js";
import { RESOURCES, type ResourceKey } from "./resources.js";
import type { SandboxTenant } from "./tenants.js";

/**
 * Display names of the app roles, as the consent prompt shows them (reference 1.2 for Defender; Graph's own
 * permission names for the Graph roles).
 */
const ROLE_DISPLAY_NAMES: Record<string, string> = {
  "Incident.Read.All": "Read all incidents",
  "Incident.ReadWrite.All": "Read and write all incidents",
  "AdvancedHunting.Read.All": "Run advanced queries",
  "CustomDetections.ReadWrite.All": "Read and write custom detection rules",
  "SecurityIncident.Read.All": "Read all security incidents",
  "SecurityIncident.ReadWrite.All": "Read and write to all security incidents",
  "SecurityAlert.Read.All": "Read all security alerts",
};

/** The display name of an app role, or the role's value when the sandbox does not know one. */
export function roleDisplayName(role: string): string {
  return ROLE_DISPLAY_NAMES[role] ?? role;
}

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(value: string): string {
  return value
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/**
 * Headers of every HTML page: never cached, never framed, no script or external resource can load.
 * No `form-action` directive: browsers apply it to the redirect after the POST, and redirect URIs are other origins.
 */
export const HTML_PAGE_HEADERS: Record<string, string> = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store, no-cache",
  pragma: "no-cache",
  "x-frame-options": "DENY",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
};

const STYLE = `
  *{box-sizing:border-box}
  body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#f2f2f2;
    font:15px/1.45 "Segoe UI",system-ui,-apple-system,Helvetica,Arial,sans-serif;color:#1b1b1b}
  main{width:100%;max-width:460px;margin:24px;background:#fff;box-shadow:0 2px 6px rgba(0,0,0,.2);padding:36px 44px}
  .brand{font-size:13px;color:#5e5e5e;letter-spacing:.02em;margin-bottom:18px}
  .brand b{color:#1b1b1b}
  h1{font-size:24px;font-weight:600;margin:0 0 14px}
  .app{display:flex;gap:12px;align-items:center;margin:0 0 16px}
  .logo{width:44px;height:44px;flex:none;background:#0067b8;color:#fff;font-weight:600;font-size:20px;
    display:flex;align-items:center;justify-content:center}
  .app small{display:block;color:#5e5e5e;font-size:12px;word-break:break-all}
  h2{font-size:15px;font-weight:600;margin:18px 0 6px}
  ul{margin:0;padding:0 0 0 20px}
  li{margin:4px 0}
  li small{display:block;color:#5e5e5e;font-size:12px}
  label{display:block;font-weight:600;margin:18px 0 6px}
  select{width:100%;padding:6px;font:inherit;border:1px solid #8a8a8a}
  .note{font-size:13px;color:#5e5e5e;margin:18px 0 0}
  .buttons{display:flex;justify-content:flex-end;gap:8px;margin-top:26px}
  button{min-width:108px;padding:6px 14px;font:inherit;border:1px solid #8a8a8a;background:#fff;cursor:pointer}
  button.primary{background:#0067b8;border-color:#0067b8;color:#fff}
  button:focus-visible{outline:2px solid #1b1b1b;outline-offset:2px}
  .error{border-left:4px solid #a80000;padding:4px 0 4px 12px;margin:14px 0;word-break:break-word}
  dl{font-size:12px;color:#5e5e5e;margin:20px 0 0;display:grid;grid-template-columns:auto 1fr;gap:2px 10px}
  dt{font-weight:600}
  dd{margin:0;word-break:break-all}
  code{word-break:break-all}
`;

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<div class="brand"><b>Microsoft Entra ID</b> · Crosswatch sandbox (emulated)</div>
${body}
</main>
</body>
</html>
`;
}

export interface ConsentPageInput {
  appDisplayName: string;
  clientId: string;
  /** The roles the app requires, per resource. */
  requiredRoles: Record<ResourceKey, string[]>;
  /** A fixed tenant (the link named one), or the tenants to choose from (`common`/`organizations`). */
  tenant: { fixed: SandboxTenant } | { choices: SandboxTenant[]; preselectedId: string | undefined };
  /** Where the form posts (a path on the sandbox). */
  action: string;
  /** The flow's parameters, carried to the decision endpoint as hidden fields (empty ones left out). */
  hidden: Record<string, string>;
  /** Where the admin is sent after deciding (origin and path), shown so they know before they click. */
  returnTo: string | undefined;
}

/** The admin-consent prompt: app, permissions, tenant, Accept / Decline (a plain form, no script). */
export function renderConsentPage(input: ConsentPageInput): string {
  const initial = input.appDisplayName.trim().charAt(0).toUpperCase() || "A";
  const fixedTenant = "fixed" in input.tenant ? input.tenant.fixed : undefined;
  const permissions = (Object.keys(RESOURCES) as ResourceKey[])
    .flatMap((key) => {
      // A tenant without the resource's principal cannot receive its roles; say so rather than pretend.
      const missing = fixedTenant && !fixedTenant.resources[key] ? " · not available in this organization" : "";
      return input.requiredRoles[key].map(
        (role) =>
          `<li>${escapeHtml(roleDisplayName(role))}<small>${escapeHtml(role)} · ${escapeHtml(RESOURCES[key].displayName)}${missing}</small></li>`,
      );
    })
    .join("\n");

  let tenantBlock: string;
  if ("fixed" in input.tenant) {
    const t = input.tenant.fixed;
    tenantBlock = `<h2>Organization</h2>
<p>${escapeHtml(t.displayName)}<br><small>${escapeHtml(t.domain)} · ${escapeHtml(t.id)}</small></p>`;
  } else {
    const { choices, preselectedId } = input.tenant;
    const options = choices
      .map((t) => {
        const selected = t.id === preselectedId ? " selected" : "";
        const status = t.consent.granted ? "" : " (not consented)";
        return `<option value="${escapeHtml(t.id)}"${selected}>${escapeHtml(`${t.displayName} — ${t.domain}${status}`)}</option>`;
      })
      .join("\n");
    tenantBlock = `<label for="tenant">Consent on behalf of organization</label>
<select id="tenant" name="tenant" required>
${options}
</select>`;
  }

  const hidden = Object.entries(input.hidden)
    .filter(([, value]) => value !== "")
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join("\n");
  const returnTo = input.returnTo
    ? `<p class="note">After you choose, you will be sent to <code>${escapeHtml(input.returnTo)}</code>.</p>`
    : "";

  return page(
    "Permissions requested",
    `<h1>Permissions requested</h1>
<div class="app"><div class="logo" aria-hidden="true">${escapeHtml(initial)}</div>
<div><b>${escapeHtml(input.appDisplayName)}</b><small>unverified · ${escapeHtml(input.clientId)}</small></div></div>
<form method="post" action="${escapeHtml(input.action)}">
${hidden}
<h2>This application would like to:</h2>
<ul>
${permissions || "<li>Sign in (no application permissions are required)</li>"}
</ul>
${tenantBlock}
<p class="note">If you accept, this app gets access to the specified resources for all users in your organization. No one else will be prompted to review these permissions.</p>
${returnTo}
<div class="buttons">
<button type="submit" name="decision" value="decline">Decline</button>
<button type="submit" name="decision" value="accept" class="primary">Accept</button>
</div>
</form>`,
  );
}

/** Entra's sign-in error page: the AADSTS message and the troubleshooting details. */
export function renderErrorPage(error: AadError, ids: RequestIds, nowMs: number): string {
  return page(
    "Sign in to your account",
    `<h1>Sign in</h1>
<p>Sorry, but we’re having trouble signing you in.</p>
<p class="error">AADSTS${error.code}: ${escapeHtml(error.message)}</p>
<dl>
<dt>Request Id</dt><dd>${escapeHtml(ids.traceId)}</dd>
<dt>Correlation Id</dt><dd>${escapeHtml(ids.correlationId)}</dd>
<dt>Timestamp</dt><dd>${escapeHtml(aadTimestamp(nowMs))}</dd>
<dt>Error</dt><dd>${escapeHtml(error.error)}</dd>
</dl>`,
  );
}

/** The page shown after a decision when there is no redirect URI to send the admin back to. */
export function renderResultPage(input: {
  accepted: boolean;
  appDisplayName: string;
  tenant: SandboxTenant | undefined;
  grantedRoles: string[];
}): string {
  const who = input.tenant
    ? `<p>${escapeHtml(input.tenant.displayName)}<br><small>${escapeHtml(input.tenant.domain)} · tenant id <code>${escapeHtml(input.tenant.id)}</code></small></p>`
    : "";
  if (!input.accepted) {
    return page(
      "Consent declined",
      `<h1>Consent declined</h1>
<p>No permissions were granted to <b>${escapeHtml(input.appDisplayName)}</b>. You can close this window.</p>
${who}`,
    );
  }
  const roles = input.grantedRoles.map((r) => `<li>${escapeHtml(roleDisplayName(r))}<small>${escapeHtml(r)}</small></li>`).join("\n");
  return page(
    "Consent recorded",
    `<h1>Consent recorded</h1>
<p><b>${escapeHtml(input.appDisplayName)}</b> can now request tokens in this organization. You can close this window.</p>
${who}
<h2>Granted</h2>
<ul>
${roles || "<li>No application permissions</li>"}
</ul>`,
  );
}
