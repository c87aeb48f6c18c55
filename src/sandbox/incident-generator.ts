import { Random } from "./random.js";
import type { SandboxTenant } from "./tenants.js";
import {
  SEVERITIES,
  type AlertRecord,
  type AlertSeverity,
  type AlertStatus,
  type Classification,
  type Determination,
  type DeviceRecord,
  type EntityRecord,
  type EntityType,
  type IncidentComment,
  type IncidentRecord,
  type IncidentStatus,
  type Severity,
} from "./incident-model.js";
import { isoFromMs, isoSqlDatetime, isoWithPrecision, msOf } from "./timestamps.js";

/**
 * Deterministic, realistic incident data: one seed gives the same incidents, alerts, devices and
 * entities every run. Incident scalars are generated per tenant on first access; alerts are derived per
 * incident on demand from its plan and seed (see IncidentRecord), which keeps a full tenant of 1,000
 * incidents to a few milliseconds and the 1,000-tenant sandbox small in memory.
 */

const DAY_MS = 86_400_000;
/**
 * Shared by every incident without tags or comments (most of them). Never mutated: the store replaces
 * these arrays instead of pushing into them.
 */
const NONE: string[] = Object.freeze([]) as unknown as string[];
const NO_COMMENTS: IncidentComment[] = Object.freeze([]) as unknown as IncidentComment[];
const DEFENDER_EXPERTS: string[] = Object.freeze(["Defender Experts"]) as unknown as string[];
const HOUR_MS = 3_600_000;
/** Incidents are created over this window before the anchor. */
export const HISTORY_DAYS = 90;

type Scope = "user" | "endpoint" | "mailbox" | "none";

/** One kind of alert a Microsoft product raises; incidents are made of these. */
export interface AlertTemplate {
  title: string;
  description: string;
  recommendedActions: string;
  category: string;
  serviceSource: string;
  detectionSource: string;
  detectorId: string;
  mitreTechniques: string[];
  severities: AlertSeverity[];
  scope: Scope;
  entities: EntityType[];
  device: boolean;
  /** Whether automated investigation (AIR) picks the alert up, giving investigationId/State. */
  investigated: boolean;
  threatFamilyName?: string;
  actorName?: string;
  /** Whether incident names add "involving one user" / "on multiple endpoints" to the title. */
  nameSuffix: boolean;
}

const MDE = "MicrosoftDefenderForEndpoint";
const MCAS = "MicrosoftCloudAppSecurity";
const MDO = "MicrosoftDefenderForOffice365";
const AADIP = "AADIdentityProtection";
const MDI = "MicrosoftDefenderForIdentity";

const ENDPOINT_ACTIONS =
  "Review the device timeline for suspicious activities that occurred before and after the alert, isolate the device if the activity is confirmed malicious, and collect an investigation package.";
const IDENTITY_ACTIONS =
  "Confirm the sign-in with the user, reset the user's password and revoke refresh tokens if it was not them, and review the user's recent activity.";
const MAIL_ACTIONS =
  "Review the email entities and recipients, soft-delete remaining copies, and block the sender and URLs if the message is malicious.";

/** The alert catalogue. Indices are stored in incident plans: append only, never reorder. */
export const ALERT_TEMPLATES: readonly AlertTemplate[] = [
  { title: "Impossible travel activity", description: "A user signed in from two distant locations within a time window too short to travel between them.", recommendedActions: IDENTITY_ACTIONS, category: "InitialAccess", serviceSource: MCAS, detectionSource: "MCAS", detectorId: "ImpossibleTravel", mitreTechniques: [], severities: ["Medium", "Low"], scope: "user", entities: ["User", "Ip", "Ip"], device: false, investigated: false, nameSuffix: true },
  { title: "Activity from infrequent country", description: "Activity from a country that was not recently or never visited by any user in the organization.", recommendedActions: IDENTITY_ACTIONS, category: "InitialAccess", serviceSource: MCAS, detectionSource: "MCAS", detectorId: "InfrequentCountry", mitreTechniques: [], severities: ["Medium", "Low"], scope: "user", entities: ["User", "Ip"], device: false, investigated: false, nameSuffix: true },
  { title: "Mass download by a single user", description: "A user performed an unusually large number of file downloads from cloud storage in a single session.", recommendedActions: IDENTITY_ACTIONS, category: "Exfiltration", serviceSource: MCAS, detectionSource: "MCAS", detectorId: "MassDownload", mitreTechniques: ["T1530"], severities: ["Medium", "High"], scope: "user", entities: ["User", "Ip"], device: false, investigated: false, nameSuffix: true },
  { title: "Suspicious inbox manipulation rule", description: "A user created an inbox rule that deletes or moves messages, which attackers use to hide their activity.", recommendedActions: MAIL_ACTIONS, category: "Collection", serviceSource: MCAS, detectionSource: "MCAS", detectorId: "InboxRuleManipulation", mitreTechniques: ["T1114.003", "T1564.008"], severities: ["Medium", "Low"], scope: "mailbox", entities: ["User", "Mailbox"], device: false, investigated: false, nameSuffix: true },
  { title: "Unfamiliar sign-in properties", description: "The sign-in had properties (IP, ASN, location, device, browser) not seen recently for the user.", recommendedActions: IDENTITY_ACTIONS, category: "InitialAccess", serviceSource: AADIP, detectionSource: "AAD", detectorId: "UnfamiliarLocation", mitreTechniques: ["T1078"], severities: ["Medium", "Low", "High"], scope: "user", entities: ["User", "Ip"], device: false, investigated: false, nameSuffix: true },
  { title: "Atypical travel", description: "Two sign-ins originated from geographically distant locations within an atypical time for the user.", recommendedActions: IDENTITY_ACTIONS, category: "InitialAccess", serviceSource: AADIP, detectionSource: "AAD", detectorId: "ImpossibleTravel", mitreTechniques: ["T1078"], severities: ["Medium", "Low"], scope: "user", entities: ["User", "Ip", "Ip"], device: false, investigated: false, nameSuffix: true },
  { title: "Anonymous IP address", description: "A sign-in came from an anonymous IP address such as a Tor exit node or an anonymizer VPN.", recommendedActions: IDENTITY_ACTIONS, category: "InitialAccess", serviceSource: AADIP, detectionSource: "AAD", detectorId: "AnonymizedIPAddress", mitreTechniques: ["T1090.003"], severities: ["Medium", "Low"], scope: "user", entities: ["User", "Ip"], device: false, investigated: false, nameSuffix: true },
  { title: "Password spray", description: "Many user names were attacked with common passwords from the same source in a short time.", recommendedActions: IDENTITY_ACTIONS, category: "CredentialAccess", serviceSource: AADIP, detectionSource: "AAD", detectorId: "PasswordSpray", mitreTechniques: ["T1110.003"], severities: ["High", "Medium"], scope: "user", entities: ["User", "Ip"], device: false, investigated: false, nameSuffix: true },
  { title: "Automated investigation started manually", description: "An analyst started an automated investigation on the device.", recommendedActions: ENDPOINT_ACTIONS, category: "SuspiciousActivity", serviceSource: MDE, detectionSource: "AutomatedInvestigation", detectorId: "a4d0c5c5-9d71-4a2b-9f1b-5b0a2b7b1e11", mitreTechniques: [], severities: ["Informational"], scope: "endpoint", entities: [], device: true, investigated: true, nameSuffix: true },
  { title: "Suspicious PowerShell command line", description: "A PowerShell command line with obfuscated or encoded content was executed, a technique attackers use to download and run payloads.", recommendedActions: ENDPOINT_ACTIONS, category: "Execution", serviceSource: MDE, detectionSource: "WindowsDefenderAtp", detectorId: "7d2c3f4e-1b5a-4e86-a3c9-2f6d8e0b4a17", mitreTechniques: ["T1059.001", "T1027"], severities: ["Medium", "High"], scope: "endpoint", entities: ["Process", "File", "User"], device: true, investigated: true, nameSuffix: true },
  { title: "'Mimikatz' credential theft tool", description: "The Mimikatz credential theft tool was detected on the device. Attackers use it to harvest credentials from memory.", recommendedActions: ENDPOINT_ACTIONS, category: "CredentialAccess", serviceSource: MDE, detectionSource: "WindowsDefenderAv", detectorId: "0c1d6e4b-8f2a-4b3c-9d5e-6a7f8b9c0d21", mitreTechniques: ["T1003.001"], severities: ["High"], scope: "endpoint", entities: ["File", "Process", "User"], device: true, investigated: true, threatFamilyName: "Mimikatz", nameSuffix: true },
  { title: "Ransomware behavior detected in the file system", description: "Files on the device were encrypted and renamed in a pattern typical of ransomware.", recommendedActions: ENDPOINT_ACTIONS, category: "Ransomware", serviceSource: MDE, detectionSource: "WindowsDefenderAtp", detectorId: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a831", mitreTechniques: ["T1486"], severities: ["High"], scope: "endpoint", entities: ["File", "Process"], device: true, investigated: true, nameSuffix: true },
  { title: "An active 'Emotet' malware was detected", description: "Malware from the Emotet family was detected and was active on the device.", recommendedActions: ENDPOINT_ACTIONS, category: "Malware", serviceSource: MDE, detectionSource: "WindowsDefenderAv", detectorId: "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d41", mitreTechniques: ["T1204.002"], severities: ["High", "Medium"], scope: "endpoint", entities: ["File", "Process"], device: true, investigated: true, threatFamilyName: "Emotet", nameSuffix: true },
  { title: "Suspicious process injection observed", description: "A process injected code into another process, a technique used to evade defenses and run with other privileges.", recommendedActions: ENDPOINT_ACTIONS, category: "DefenseEvasion", serviceSource: MDE, detectionSource: "WindowsDefenderAtp", detectorId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c51", mitreTechniques: ["T1055"], severities: ["Medium", "High"], scope: "endpoint", entities: ["Process", "File"], device: true, investigated: true, nameSuffix: true },
  { title: "Suspicious remote PowerShell execution", description: "PowerShell was run remotely on the device over WinRM, which attackers use to move laterally.", recommendedActions: ENDPOINT_ACTIONS, category: "LateralMovement", serviceSource: MDE, detectionSource: "WindowsDefenderAtp", detectorId: "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e61", mitreTechniques: ["T1021.006"], severities: ["Medium", "High"], scope: "endpoint", entities: ["Process", "User", "Ip"], device: true, investigated: true, nameSuffix: true },
  { title: "Connection to a custom network indicator", description: "The device connected to an address on the organization's custom indicator list.", recommendedActions: ENDPOINT_ACTIONS, category: "CommandAndControl", serviceSource: MDE, detectionSource: "CustomerTI", detectorId: "4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f71", mitreTechniques: ["T1071.001"], severities: ["Medium", "Low"], scope: "endpoint", entities: ["Url", "Ip", "Process"], device: true, investigated: false, nameSuffix: true },
  { title: "Suspicious scheduled task", description: "A scheduled task was created to run a suspicious binary at logon, a common persistence technique.", recommendedActions: ENDPOINT_ACTIONS, category: "Persistence", serviceSource: MDE, detectionSource: "WindowsDefenderAtp", detectorId: "6f7a8b9c-0d1e-4f2a-8b3c-4d5e6f7a8b81", mitreTechniques: ["T1053.005"], severities: ["Medium", "Low"], scope: "endpoint", entities: ["Process", "Registry"], device: true, investigated: true, nameSuffix: true },
  { title: "Suspicious sequence of exploration activities", description: "A process ran a sequence of reconnaissance commands (whoami, net group, nltest) typical of an attacker exploring the network.", recommendedActions: ENDPOINT_ACTIONS, category: "Discovery", serviceSource: MDE, detectionSource: "WindowsDefenderAtp", detectorId: "8b9c0d1e-2f3a-4b4c-9d5e-6f7a8b9c0d91", mitreTechniques: ["T1087.002", "T1069.002"], severities: ["Low", "Medium"], scope: "endpoint", entities: ["Process", "User"], device: true, investigated: true, nameSuffix: true },
  { title: "Email messages containing malicious URL removed after delivery", description: "Email messages containing a URL later identified as malicious were removed from mailboxes after delivery (zero-hour auto purge).", recommendedActions: MAIL_ACTIONS, category: "InitialAccess", serviceSource: MDO, detectionSource: "OfficeATP", detectorId: "d7a0b6f4-3c2e-4a5b-9c1d-0e8f7a6b5c01", mitreTechniques: ["T1566.002"], severities: ["Informational", "Low"], scope: "mailbox", entities: ["Mailbox", "MailMessage", "Url", "MailCluster"], device: false, investigated: true, nameSuffix: true },
  { title: "Email reported by user as malware or phish", description: "A user reported an email as malware or phishing.", recommendedActions: MAIL_ACTIONS, category: "InitialAccess", serviceSource: MDO, detectionSource: "OfficeATP", detectorId: "e8b1c7a5-4d3f-4b6c-8d2e-1f9a8b7c6d11", mitreTechniques: ["T1566"], severities: ["Informational", "Low"], scope: "mailbox", entities: ["Mailbox", "MailMessage"], device: false, investigated: true, nameSuffix: true },
  { title: "A potentially malicious URL click was detected", description: "A user clicked a URL in an email that was later identified as malicious.", recommendedActions: MAIL_ACTIONS, category: "InitialAccess", serviceSource: MDO, detectionSource: "OfficeATP", detectorId: "f9c2d8b6-5e4a-4c7d-9e3f-2a0b9c8d7e21", mitreTechniques: ["T1566.002"], severities: ["High", "Medium"], scope: "mailbox", entities: ["User", "Url", "Mailbox"], device: false, investigated: true, nameSuffix: true },
  { title: "Email messages containing malware removed after delivery", description: "Email messages with a malicious attachment were removed from mailboxes after delivery.", recommendedActions: MAIL_ACTIONS, category: "Malware", serviceSource: MDO, detectionSource: "OfficeATP", detectorId: "a0d3e9c7-6f5b-4d8e-8f4a-3b1c0d9e8f31", mitreTechniques: ["T1566.001"], severities: ["Informational", "Medium"], scope: "mailbox", entities: ["Mailbox", "MailMessage", "File", "MailCluster"], device: false, investigated: true, nameSuffix: true },
  { title: "Suspected DCSync attack (replication of directory services)", description: "A non-domain-controller requested directory replication, which attackers use to retrieve password hashes.", recommendedActions: IDENTITY_ACTIONS, category: "CredentialAccess", serviceSource: MDI, detectionSource: "AzureATP", detectorId: "DirectoryServicesReplication", mitreTechniques: ["T1003.006"], severities: ["High"], scope: "user", entities: ["User", "Ip"], device: false, investigated: false, nameSuffix: true },
  { title: "Suspected identity theft (pass-the-ticket)", description: "A Kerberos ticket issued to one device was used from another device.", recommendedActions: IDENTITY_ACTIONS, category: "LateralMovement", serviceSource: MDI, detectionSource: "AzureATP", detectorId: "PassTheTicket", mitreTechniques: ["T1550.003"], severities: ["High", "Medium"], scope: "user", entities: ["User", "Ip"], device: false, investigated: false, nameSuffix: true },
  { title: "User login from a domain not seen in 60 days", description: "A user signed in to a database from a domain that has not connected to it in the last 60 days.", recommendedActions: IDENTITY_ACTIONS, category: "InitialAccess", serviceSource: "MicrosoftDefenderForCloud", detectionSource: "DefenderForDatabases", detectorId: "SQL.VM_DomainAnomaly", mitreTechniques: ["T1078"], severities: ["Medium", "Low"], scope: "user", entities: ["Ip", "User"], device: false, investigated: false, nameSuffix: false },
  { title: "DLP policy (Custom policy) matched for email with subject (Q3 board pack - confidential)", description: "An email matched a data loss prevention policy for sensitive financial information.", recommendedActions: MAIL_ACTIONS, category: "Exfiltration", serviceSource: "DataLossPrevention", detectionSource: "MicrosoftDataLossPrevention", detectorId: "DlpPolicyMatch", mitreTechniques: [], severities: ["Medium", "Low"], scope: "user", entities: ["MailMessage", "User"], device: false, investigated: false, nameSuffix: true },
  { title: "Suspicious additions to sensitive groups", description: "A user was added to a sensitive security group outside the usual change process.", recommendedActions: IDENTITY_ACTIONS, category: "Persistence", serviceSource: MDI, detectionSource: "AzureATP", detectorId: "SensitiveGroupAddition", mitreTechniques: ["T1098"], severities: ["Medium", "High"], scope: "user", entities: ["User", "SecurityGroup"], device: false, investigated: false, nameSuffix: true },
];

/** Weighted choice of single-source incidents; the common ones dominate, as in real tenants. */
const SINGLE_WEIGHTS: readonly (readonly [number, number])[] = [
  [0, 10], [1, 6], [2, 3], [3, 3], [4, 8], [5, 4], [6, 4], [7, 2], [8, 9], [9, 4], [10, 2], [11, 1],
  [12, 3], [13, 2], [14, 1], [15, 3], [16, 2], [17, 2], [18, 8], [19, 6], [20, 4], [21, 4], [22, 1],
  [23, 1], [24, 2], [25, 3], [26, 1],
];
const INITIAL_ACCESS = [0, 4, 6, 7, 18, 20, 21];
const FOLLOW_ON = [2, 3, 9, 10, 11, 12, 13, 14, 15, 16, 17, 22, 23, 26];

const CATEGORY_NAMES: Record<string, string> = {
  InitialAccess: "Initial access",
  Execution: "Execution",
  Persistence: "Persistence",
  PrivilegeEscalation: "Privilege escalation",
  DefenseEvasion: "Defense evasion",
  CredentialAccess: "Credential access",
  Discovery: "Discovery",
  LateralMovement: "Lateral movement",
  Collection: "Collection",
  CommandAndControl: "Command and control",
  Exfiltration: "Exfiltration",
  Impact: "Impact",
  Ransomware: "Ransomware",
  Malware: "Malware",
  SuspiciousActivity: "Suspicious activity",
};

const FIRST_NAMES = ["Megan", "Alex", "Adele", "Diego", "Grady", "Henrietta", "Isaiah", "Johanna", "Joni", "Lee", "Lidia", "Lynne", "Miriam", "Nestor", "Patti", "Pradeep", "Kai", "David", "Amara", "Chen", "Fatima", "Hiroshi", "Ingrid", "Kwame", "Lucia", "Mateo", "Noor", "Oskar", "Priya", "Rafael", "Sofia", "Tomasz", "Yusuf", "Zanele"];
const LAST_NAMES = ["Bowen", "Wilber", "Vance", "Siciliani", "Archie", "Cormier", "Langer", "Lauer", "Sherman", "Gu", "Holloway", "Robbins", "Graham", "Wilke", "Fernandez", "Gupta", "Carter", "Smith", "Okafor", "Wei", "Haddad", "Tanaka", "Larsen", "Mensah", "Romero", "Silva", "Rahman", "Nowak", "Iyer", "Costa", "Jansen", "Kowalski", "Demir", "Dlamini"];
const CUSTOM_TAGS = ["VIP", "Finance", "Phishing campaign", "Red team", "PenTest", "Escalated", "Customer notified", "Known benign", "Executive", "Crown jewels", "Tier 2", "Needs review"];
const COMMENTS = [
  "Contacted the user; sign-in confirmed as legitimate travel.",
  "Isolated the device and collected an investigation package.",
  "Password reset and sessions revoked.",
  "Escalated to the customer's security lead.",
  "Blocked the sender domain and purged remaining messages.",
  "Part of the authorised penetration test this week.",
  "No further activity seen after remediation; closing.",
  "Waiting on the customer to confirm the change ticket.",
  "Hash submitted for deep analysis.",
  "Monitoring for recurrence over the next 48 hours.",
];
const DESCRIPTIONS = [
  "Microsoft observed credential phishing activity targeting several users in your environment. Review the affected mailboxes and reset credentials where sign-ins succeeded.",
  "Microsoft observed hands-on-keyboard activity consistent with a human-operated ransomware precursor. Investigate the affected devices urgently.",
  "Microsoft observed Raspberry Robin worm activity spreading through infected USB devices in your environment.",
  "Microsoft observed suspicious sign-in activity followed by mailbox rule changes, consistent with business email compromise.",
];
const RESOLVING_COMMENTS = ["Confirmed benign after user contact.", "Remediated: device reimaged.", "Duplicate of an existing investigation.", "Authorised security testing."];
const OS_VERSIONS: readonly { osPlatform: string; version: string; osBuild: number }[] = [
  { osPlatform: "Windows10", version: "1909", osBuild: 18363 },
  { osPlatform: "Windows10", version: "21H2", osBuild: 19044 },
  { osPlatform: "Windows10", version: "22H2", osBuild: 19045 },
  { osPlatform: "Windows11", version: "22H2", osBuild: 22621 },
  { osPlatform: "Windows11", version: "23H2", osBuild: 22631 },
  { osPlatform: "WindowsServer2016", version: "1607", osBuild: 14393 },
  { osPlatform: "WindowsServer2019", version: "1809", osBuild: 17763 },
  { osPlatform: "WindowsServer2022", version: "21H2", osBuild: 20348 },
];
const FILES: readonly { fileName: string; filePath: string }[] = [
  { fileName: "invoice_8841.js", filePath: "C:\\Users\\{user}\\Downloads" },
  { fileName: "mimikatz.exe", filePath: "C:\\ProgramData\\tmp" },
  { fileName: "update.ps1", filePath: "C:\\Users\\{user}\\AppData\\Local\\Temp" },
  { fileName: "svchost32.exe", filePath: "C:\\Windows\\Temp" },
  { fileName: "payroll_Q3.xlsm", filePath: "C:\\Users\\{user}\\Documents" },
  { fileName: "rundll.dll", filePath: "C:\\Users\\{user}\\AppData\\Roaming" },
  { fileName: "README_RESTORE.txt", filePath: "C:\\Users\\{user}\\Desktop" },
];
const PROCESS_COMMANDS = [
  "powershell.exe -NoProfile -ExecutionPolicy Bypass -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA",
  "rundll32.exe C:\\Users\\Public\\rundll.dll,DllRegisterServer",
  "cmd.exe /c whoami /all && net group \"Domain Admins\" /domain && nltest /dclist:",
  "schtasks.exe /create /sc onlogon /tn \"OneDrive Update\" /tr C:\\Windows\\Temp\\svchost32.exe",
  "mimikatz.exe \"privilege::debug\" \"sekurlsa::logonpasswords\" exit",
  "wmic.exe shadowcopy delete /nointeractive",
];
const URLS = [
  "https://login-microsoftonline.account-verify.example.net/common/oauth2",
  "https://sharepoint-docs.example.org/invoice/8841",
  "http://cdn-update.example.com/payload.bin",
  "https://payroll-portal.example.net/login",
  "http://203.0.113.45:8080/gate.php",
];
const MAIL_SUBJECTS = ["Your invoice is overdue", "Action required: password expires today", "Shared document: Q3 results", "Voicemail received (0:42)", "Updated bank details for payment"];
const SECURITY_GROUPS = ["Domain Admins", "Enterprise Admins", "Schema Admins", "Account Operators", "Backup Operators"];

/** A tenant's stable cast: users, devices and SOC analysts, reused by every incident of the tenant. */
export interface TenantPools {
  domain: string;
  /** NetBIOS-style domain, e.g. `CONTOSO`. */
  netbios: string;
  users: UserRecord[];
  devices: DeviceRecord[];
  /** UPNs of the people who assign, comment on and resolve incidents. */
  analysts: string[];
}

/** One person of a tenant, as User and Mailbox entities name them. */
export interface UserRecord {
  displayName: string;
  accountName: string;
  userPrincipalName: string;
  aadUserId: string;
  userSid: string;
}

/** Builds a tenant's pools; cheap, deterministic per (seed, tenant index). */
export function tenantPools(seed: number, tenant: SandboxTenant): TenantPools {
  const rnd = Random.derive(seed, "pools", tenant.index);
  const prefix = tenant.domain.split(".")[0]!;
  const netbios = prefix.slice(0, 15).toUpperCase();
  const sidBase = `S-1-5-21-${rnd.int(1e9, 4e9)}-${rnd.int(1e9, 4e9)}-${rnd.int(1e9, 4e9)}`;
  const users: UserRecord[] = [];
  const seen = new Set<string>();
  for (let i = 0; users.length < 40 && i < 200; i++) {
    const first = rnd.pick(FIRST_NAMES);
    const last = rnd.pick(LAST_NAMES);
    const upnLocal = `${first}.${last}`.toLowerCase();
    if (seen.has(upnLocal)) continue;
    seen.add(upnLocal);
    users.push({
      displayName: `${first} ${last}`,
      accountName: `${first[0]}${last}`.toLowerCase(),
      userPrincipalName: `${upnLocal}@${tenant.domain}`,
      aadUserId: rnd.guid(),
      userSid: `${sidBase}-${1100 + users.length * 7 + rnd.int(0, 6)}`,
    });
  }
  const analysts = users.slice(0, 4).map((u) => u.userPrincipalName.replace(/^([^@]+)@/, "soc.$1@"));
  const devices: DeviceRecord[] = [];
  for (let i = 0; i < 30; i++) {
    const os = rnd.pick(OS_VERSIONS);
    const server = os.osPlatform.startsWith("WindowsServer");
    const host = server ? `srv-${rnd.pick(["app", "sql", "dc", "file", "web"])}-${String(i).padStart(2, "0")}` : `ws-${rnd.hex(5)}`;
    const onAzure = server && rnd.chance(0.4);
    const subscriptionId = rnd.guid();
    devices.push({
      mdatpDeviceId: rnd.hex(40),
      aadDeviceId: server ? null : rnd.guid(),
      deviceDnsName: `${host}.${prefix}.local`,
      osPlatform: os.osPlatform,
      version: os.version,
      osProcessor: "x64",
      osBuild: os.osBuild,
      healthStatus: rnd.weighted([["Active", 8], ["Inactive", 1], ["ImpairedCommunication", 1]] as const),
      riskScore: rnd.pick(["Informational", "Low", "Medium", "High", "None"]),
      rbacGroupName: rnd.chance(0.5) ? null : rnd.pick(["Servers", "Workstations", "Finance devices", "UnassignedGroup"]),
      rbacGroupId: rnd.int(1, 120),
      firstSeen: isoFromMs(tenant.createdUnix * 1000 + rnd.int(1, 300) * DAY_MS, rnd.int(0, 9999)),
      tags: rnd.chance(0.3) ? [rnd.pick(["Production", "VIP device", "Kiosk", "Test Machine"])] : [],
      defenderAvStatus: rnd.weighted([["Updated", 8], ["NotUpdated", 1], ["Unknown", 1]] as const),
      onboardingStatus: "Onboarded",
      vmMetadata: onAzure
        ? {
            vmId: rnd.guid(),
            cloudProvider: "Azure",
            resourceId: `/subscriptions/${subscriptionId}/resourceGroups/rg-${prefix}/providers/Microsoft.Compute/virtualMachines/${host}`,
            subscriptionId,
          }
        : null,
      ipAddress: `10.${rnd.int(0, 30)}.${rnd.int(0, 255)}.${rnd.int(2, 254)}`,
    });
  }
  return { domain: tenant.domain, netbios, users, devices, analysts };
}

/** First incident id of a tenant: per-tenant ranges that never overlap, so mixed-up tenants show. */
export function firstIncidentId(seed: number, tenant: SandboxTenant): number {
  return 1000 + tenant.index * 20_000 + Random.derive(seed, "incident-id", tenant.index).int(0, 4000);
}

/**
 * Generates a tenant's initial incidents, oldest first (ids increase with `createdTime`).
 *
 * @param anchorMs "now" for the data: incidents are created over the 90 days before it, never after
 */
export function generateTenantIncidents(seed: number, tenant: SandboxTenant, pools: TenantPools, anchorMs: number): IncidentRecord[] {
  const count = tenant.incidentCount;
  const rnd = Random.derive(seed, "incidents", tenant.index);
  const created: number[] = new Array(count);
  for (let i = 0; i < count; i++) {
    // Biased towards recent days: busier recently, as retention windows make it look in real tenants.
    created[i] = anchorMs - 120_000 - Math.floor(rnd.next() ** 1.25 * HISTORY_DAYS * DAY_MS);
  }
  created.sort((a, b) => a - b);
  const incidents: IncidentRecord[] = new Array(count);
  let id = firstIncidentId(seed, tenant);
  for (let i = 0; i < count; i++) {
    incidents[i] = generateIncident(rnd, tenant, pools, id, created[i]!, anchorMs);
    id += rnd.int(1, 3);
  }
  applyMerges(rnd, incidents, anchorMs);
  return incidents;
}

/** Marks a few incidents as merged into a later one (status Redirected), as the correlation engine does. */
function applyMerges(rnd: Random, incidents: IncidentRecord[], anchorMs: number): void {
  const redirected = new Array<boolean>(incidents.length).fill(false);
  for (let i = incidents.length - 2; i >= 0; i--) {
    if (!rnd.chance(0.035)) continue;
    const candidates: number[] = [];
    for (let j = i + 1; j <= Math.min(i + 4, incidents.length - 1); j++) if (!redirected[j]) candidates.push(j);
    if (candidates.length === 0) continue;
    const target = incidents[rnd.pick(candidates)]!;
    const source = incidents[i]!;
    redirected[i] = true;
    const mergedAt = Math.min(anchorMs, msOf(target.createdTime) + rnd.int(50, 5000));
    const mergedTime = isoSqlDatetime(mergedAt);
    Object.assign(source, {
      status: "Redirected",
      severity: "UnSpecified",
      redirectIncidentId: target.incidentId,
      classification: "Unknown",
      determination: "NotAvailable",
      tags: NONE,
      systemTags: NONE,
      comments: NO_COMMENTS,
      seededComments: 0,
      plan: [],
      spread: false,
      resolvingComment: null,
      lastModifiedBy: "Microsoft 365 Defender-AlertCorrelation",
      lastUpdateTime: mergedTime > source.createdTime ? mergedTime : source.createdTime,
    } satisfies Partial<IncidentRecord>);
    if (target.lastUpdateTime < mergedTime) target.lastUpdateTime = mergedTime;
  }
}

function generateIncident(
  rnd: Random,
  tenant: SandboxTenant,
  pools: TenantPools,
  incidentId: number,
  createdMs: number,
  anchorMs: number,
): IncidentRecord {
  const { plan, spread } = drawPlan(rnd);
  const ageMs = anchorMs - createdMs;
  const status: IncidentStatus =
    ageMs < DAY_MS
      ? rnd.weighted([["Active", 60], ["InProgress", 30], ["Resolved", 10]] as const)
      : ageMs < 7 * DAY_MS
        ? rnd.weighted([["Active", 35], ["InProgress", 25], ["Resolved", 40]] as const)
        : rnd.weighted([["Active", 12], ["InProgress", 8], ["Resolved", 80]] as const);
  // Resolution takes minutes to days; open incidents were last touched anywhere since creation.
  const spanMs =
    status === "Resolved"
      ? Math.min(ageMs, Math.floor(Math.exp(rnd.next() * Math.log(10 * DAY_MS / 60_000)) * 60_000))
      : Math.floor(ageMs * rnd.next() * 0.8);
  const updatedMs = Math.min(anchorMs, createdMs + spanMs);
  const createdTime = isoSqlDatetime(createdMs);
  let lastUpdateTime = isoSqlDatetime(updatedMs);
  if (lastUpdateTime < createdTime) lastUpdateTime = createdTime;

  const severity = drawSeverity(rnd, plan);
  const { classification, determination } = drawVerdict(rnd, status);
  const assigned =
    status === "Active" ? rnd.chance(0.4) : status === "InProgress" ? rnd.chance(0.9) : rnd.chance(0.8);
  const assignedTo = assigned ? rnd.pick(pools.analysts) : null;
  const commentCount = status === "Active" ? (rnd.chance(0.15) ? 1 : 0) : rnd.int(0, 3);
  const tags = rnd.chance(0.3) ? uniquePicks(rnd, CUSTOM_TAGS, rnd.int(1, 2)) : NONE;
  const lastModifiedBy = commentCount > 0 || assignedTo
    ? assignedTo ?? rnd.pick(pools.analysts)
    : plan.length > 1
      ? "Microsoft 365 Defender-AlertCorrelation"
      : "Microsoft 365 Defender-IncidentCreation";
  return {
    tenantId: tenant.id,
    incidentId,
    redirectIncidentId: null,
    incidentName: incidentNameFor(plan, spread),
    createdTime,
    lastUpdateTime,
    assignedTo,
    classification,
    determination,
    status,
    severity,
    tags,
    systemTags: rnd.chance(0.05) ? DEFENDER_EXPERTS : NONE,
    seededComments: commentCount,
    description: rnd.chance(0.15) ? rnd.pick(DESCRIPTIONS) : null,
    summary: null,
    resolvingComment: status === "Resolved" && rnd.chance(0.3) ? rnd.pick(RESOLVING_COMMENTS) : null,
    lastModifiedBy,
    plan,
    spread,
    alertSeed: rnd.int(0, 0xffffffff),
  };
}

/** Which alerts make up an incident: one source repeated, or a multi-stage chain. */
function drawPlan(rnd: Random): { plan: number[]; spread: boolean } {
  const alertCount = rnd.weighted([[1, 45], [2, 25], [3, 15], [4, 10], [5, 5]] as const);
  if (alertCount === 1 || rnd.chance(0.5)) {
    const template = rnd.weighted(SINGLE_WEIGHTS);
    return { plan: new Array<number>(alertCount).fill(template), spread: alertCount > 1 && rnd.chance(0.35) };
  }
  const plan = [rnd.pick(INITIAL_ACCESS)];
  while (plan.length < alertCount) {
    const next = rnd.pick(FOLLOW_ON);
    if (!plan.includes(next)) plan.push(next);
  }
  return { plan, spread: rnd.chance(0.35) };
}

const NAME_CACHE = new Map<string, string>();

/**
 * Incident names the way Defender composes them ("… involving one user", "Multi-stage incident …").
 * Interned: a handful of distinct names are shared by a million incidents.
 */
export function incidentNameFor(plan: readonly number[], spread: boolean): string {
  const key = `${plan.join(",")}|${spread ? 1 : 0}`;
  let name = NAME_CACHE.get(key);
  if (name === undefined) {
    name = composeIncidentName(plan, spread);
    NAME_CACHE.set(key, name);
  }
  return name;
}

function composeIncidentName(plan: readonly number[], spread: boolean): string {
  const templates = plan.map((t) => ALERT_TEMPLATES[t]!);
  const first = templates[0]!;
  const endpoints = templates.some((t) => t.scope === "endpoint");
  const where = endpoints
    ? spread ? " on multiple endpoints" : " on one endpoint"
    : spread ? " involving multiple users" : " involving one user";
  if (templates.every((t) => t === first)) return first.nameSuffix ? `${first.title}${where}` : first.title;
  const categories = [...new Set(templates.map((t) => t.category))];
  const sources = new Set(templates.map((t) => t.serviceSource));
  const bySources = sources.size > 1 ? " reported by multiple sources" : "";
  if (categories.length === 1) return `${CATEGORY_NAMES[categories[0]!] ?? categories[0]} incident${where}${bySources}`;
  const names = categories.slice(0, 2).map((c) => CATEGORY_NAMES[c] ?? c);
  return `Multi-stage incident involving ${names.join(" & ")}${where}${bySources}`;
}

function drawSeverity(rnd: Random, plan: readonly number[]): Severity {
  const options = new Set<AlertSeverity>();
  for (const t of plan) for (const s of ALERT_TEMPLATES[t]!.severities) options.add(s);
  const sorted = [...options].sort((a, b) => SEVERITIES.indexOf(b) - SEVERITIES.indexOf(a));
  // Multi-alert incidents lean towards their worst alert.
  return plan.length > 1 && rnd.chance(0.6) ? sorted[0]! : rnd.pick(sorted);
}

function drawVerdict(rnd: Random, status: IncidentStatus): { classification: Classification; determination: Determination } {
  const roll = rnd.next();
  if (status !== "Resolved") {
    return roll < 0.9
      ? { classification: "Unknown", determination: "NotAvailable" }
      : { classification: "TruePositive", determination: rnd.pick(["MultiStagedAttack", "CompromisedUser", "Phishing", "Malware"] as const) };
  }
  if (roll < 0.3) return { classification: "Unknown", determination: "NotAvailable" };
  if (roll < 0.6) {
    return {
      classification: "TruePositive",
      determination: rnd.weighted([["MultiStagedAttack", 3], ["MaliciousUserActivity", 2], ["CompromisedUser", 3], ["Malware", 3], ["Phishing", 3], ["UnwantedSoftware", 1], ["Other", 1], ["Apt", 0.3]] as const),
    };
  }
  if (roll < 0.85) return { classification: "FalsePositive", determination: rnd.weighted([["Clean", 4], ["InsufficientData", 2], ["Other", 1]] as const) };
  return {
    classification: "InformationalExpectedActivity",
    determination: rnd.weighted([["SecurityTesting", 3], ["LineOfBusinessApplication", 2], ["ConfirmedUserActivity", 3], ["Other", 1], ["SecurityPersonnel", 0.3]] as const),
  };
}

function uniquePicks<T>(rnd: Random, items: readonly T[], n: number): T[] {
  const out: T[] = [];
  while (out.length < n) {
    const item = rnd.pick(items);
    if (!out.includes(item)) out.push(item);
  }
  return out;
}

/**
 * Derives an incident's alerts from its plan and seed. Pure: the same record always yields the same
 * alerts, so they need not be stored until the incident changes.
 */
export function buildAlerts(record: IncidentRecord, pools: TenantPools): AlertRecord[] {
  if (record.plan.length === 0) return [];
  const rnd = new Random(record.alertSeed);
  const createdMs = msOf(record.createdTime);
  const updatedMs = msOf(record.lastUpdateTime);
  const victim = { user: rnd.pick(pools.users), device: rnd.pick(pools.devices) };
  const alertSeverity = (record.severity === "UnSpecified" ? "Medium" : record.severity) as AlertSeverity;
  const investigationId = rnd.int(1, 9000);
  return record.plan.map((templateIndex, k) => {
    const template = ALERT_TEMPLATES[templateIndex]!;
    const creationMs = k === 0 ? createdMs - rnd.int(200, 3000) : createdMs + Math.floor((updatedMs - createdMs) * rnd.next() * 0.6);
    const lastUpdatedMs = k === 0 ? updatedMs : creationMs + Math.floor((updatedMs - creationMs) * rnd.next());
    const who = record.spread && k > 0 ? { user: rnd.pick(pools.users), device: rnd.pick(pools.devices) } : victim;
    const capped = template.severities.filter((s) => SEVERITIES.indexOf(s) <= SEVERITIES.indexOf(alertSeverity));
    const severity = k === 0 ? alertSeverity : capped.length > 0 ? rnd.pick(capped) : alertSeverity;
    return makeAlert(rnd, record, pools, template, {
      creationMs,
      lastUpdatedTime: k === 0 ? record.lastUpdateTime : isoSqlDatetime(lastUpdatedMs),
      severity,
      status: alertStatusFor(rnd, record.status),
      who,
      investigationId: template.investigated ? investigationId + (record.spread ? k : 0) : null,
    });
  });
}

/** Derives a generated incident's comments (SOC analysts' notes spread between creation and last update). */
export function buildComments(record: IncidentRecord, pools: TenantPools): IncidentComment[] {
  if (record.seededComments === 0) return NO_COMMENTS;
  const rnd = new Random((record.alertSeed ^ 0x2545f491) >>> 0);
  const createdMs = msOf(record.createdTime);
  const updatedMs = msOf(record.lastUpdateTime);
  const count = record.seededComments;
  const comments: IncidentComment[] = [];
  for (let c = 0; c < count; c++) {
    const at = createdMs + Math.floor(((c + 1) / (count + 1)) * (updatedMs - createdMs));
    const author = record.assignedTo ?? rnd.pick(pools.analysts);
    comments.push({ comment: rnd.pick(COMMENTS), createdBy: author, createdTime: isoFromMs(at, rnd.int(0, 9999)) });
  }
  return comments;
}

function alertStatusFor(rnd: Random, status: IncidentStatus): AlertStatus {
  if (status === "Resolved") return "Resolved";
  if (status === "InProgress") return rnd.chance(0.6) ? "InProgress" : "New";
  return rnd.chance(0.8) ? "New" : "InProgress";
}

/** Builds one alert. Also used by activity to add a fresh alert to an open incident. */
export function makeAlert(
  rnd: Random,
  record: Pick<IncidentRecord, "incidentId" | "assignedTo" | "status">,
  pools: TenantPools,
  template: AlertTemplate,
  input: {
    creationMs: number;
    lastUpdatedTime: string;
    severity: AlertSeverity;
    status: AlertStatus;
    who: { user: UserRecord; device: DeviceRecord };
    investigationId: number | null;
  },
): AlertRecord {
  const creationTime = isoFromMs(input.creationMs, rnd.int(0, 9999));
  const activitySpan = rnd.int(0, 6 * HOUR_MS);
  const lastActivityMs = input.creationMs - rnd.int(5_000, 15 * 60_000);
  const firstActivityMs = lastActivityMs - (rnd.chance(0.4) ? 0 : activitySpan);
  const precision = () => rnd.int(0, 7);
  const firstActivity = isoWithPrecision(firstActivityMs, precision(), () => rnd.next());
  const lastActivity = firstActivityMs === lastActivityMs ? firstActivity : isoWithPrecision(lastActivityMs, precision(), () => rnd.next());
  let resolvedTime: string | null = null;
  if (input.status === "Resolved") {
    const resolvedMs = Math.max(input.creationMs, msOf(input.lastUpdatedTime) - rnd.int(0, 20_000));
    resolvedTime = rnd.chance(0.5) ? isoFromMs(resolvedMs, rnd.int(0, 9999)) : isoWithPrecision(resolvedMs, rnd.int(2, 3), () => rnd.next());
  }
  const { alertId, providerAlertId } = alertIds(rnd, template);
  const investigationState = input.investigationId === null
    ? "UnsupportedAlertType"
    : input.status === "Resolved"
      ? rnd.weighted([["Benign", 5], ["SuccessfullyRemediated", 4], ["TerminatedBySystem", 1], ["PartiallyRemediated", 1]] as const)
      : rnd.weighted([["Running", 3], ["PendingApproval", 3], ["PartiallyInvestigated", 1], ["Queued", 1]] as const);
  const alertClassification: Classification | null =
    input.status === "Resolved" && rnd.chance(0.3) ? rnd.pick(["FalsePositive", "TruePositive"] as const) : null;
  return {
    alertId,
    providerAlertId,
    incidentId: record.incidentId,
    serviceSource: template.serviceSource,
    creationTime,
    lastUpdatedTime: input.lastUpdatedTime < creationTime ? creationTime : input.lastUpdatedTime,
    resolvedTime,
    firstActivity,
    lastActivity,
    title: template.title,
    description: template.description,
    recommendedActions: template.recommendedActions,
    category: template.category,
    status: input.status,
    severity: input.severity,
    investigationId: input.investigationId,
    investigationState,
    classification: alertClassification,
    determination: alertClassification === "TruePositive" ? rnd.pick(["Malware", "Other"] as const) : null,
    detectionSource: template.detectionSource,
    detectorId: template.detectorId,
    assignedTo: input.investigationId !== null && rnd.chance(0.3) ? "Automation" : record.assignedTo,
    actorName: template.actorName ?? null,
    threatFamilyName: template.threatFamilyName ?? null,
    mitreTechniques: [...template.mitreTechniques],
    devices: template.device ? [input.who.device] : [],
    entities: template.entities.map((kind) => makeEntity(rnd, kind, creationTime, pools, input.who)),
  };
}

/** Alert ids carry their source in a two-letter prefix, as real ones do (`da…`, `ca…`, `fa…`, `ad…`). */
function alertIds(rnd: Random, template: AlertTemplate): { alertId: string; providerAlertId: string } {
  switch (template.serviceSource) {
    case MDE: {
      const provider = `63${rnd.int(7000000, 8999999)}${rnd.int(1000000, 9999999)}${rnd.int(10, 99)}_${rnd.chance(0.5) ? "-" : ""}${rnd.int(100000000, 2147483647)}`;
      return { alertId: `da${provider}`, providerAlertId: provider };
    }
    case MCAS: {
      const provider = rnd.hex(24).toUpperCase();
      return { alertId: `ca${provider}`, providerAlertId: provider };
    }
    case MDO: {
      const provider = rnd.guid();
      return { alertId: `fa${provider}`, providerAlertId: provider };
    }
    case AADIP: {
      const provider = rnd.hex(64);
      return { alertId: `ad${provider}`, providerAlertId: provider };
    }
    case MDI: {
      const provider = rnd.guid();
      return { alertId: `aa${provider}`, providerAlertId: provider };
    }
    case "MicrosoftDefenderForCloud": {
      const provider = rnd.guid();
      return { alertId: `dc${provider}`, providerAlertId: provider };
    }
    default: {
      const provider = rnd.guid();
      return { alertId: `dl${provider}`, providerAlertId: provider };
    }
  }
}

function hash(rnd: Random, length: number): string {
  return rnd.hex(length);
}

function makeEntity(
  rnd: Random,
  kind: EntityType,
  evidenceCreationTime: string,
  pools: TenantPools,
  who: { user: UserRecord; device: DeviceRecord },
): EntityRecord {
  const verdict = rnd.weighted([["Suspicious", 5], ["Malicious", 3], ["NoThreatsFound", 1], ["Unknown", 1]] as const);
  const remediationStatus = rnd.weighted([["None", 6], ["Remediated", 2], ["Prevented", 1], ["Blocked", 1]] as const);
  const base = { entityType: kind, evidenceCreationTime, verdict, remediationStatus };
  const user = who.user;
  switch (kind) {
    case "User":
      return { ...base, accountName: user.accountName, domainName: pools.netbios, userSid: user.userSid, aadUserId: user.aadUserId, userPrincipalName: user.userPrincipalName };
    case "Ip":
      return { ...base, ipAddress: rnd.pick([`203.0.113.${rnd.int(1, 254)}`, `198.51.100.${rnd.int(1, 254)}`, `192.0.2.${rnd.int(1, 254)}`, who.device.ipAddress]) };
    case "Url":
      return { ...base, url: rnd.pick(URLS) };
    case "File": {
      const file = rnd.pick(FILES);
      return { ...base, sha1: hash(rnd, 40), sha256: hash(rnd, 64), fileName: file.fileName, filePath: file.filePath.replace("{user}", user.accountName), deviceId: who.device.mdatpDeviceId };
    }
    case "Process": {
      const command = rnd.pick(PROCESS_COMMANDS);
      const image = command.split(" ")[0]!;
      const startedMs = msOf(evidenceCreationTime) - rnd.int(10_000, 3_600_000);
      return {
        ...base,
        sha1: hash(rnd, 40),
        sha256: hash(rnd, 64),
        fileName: image,
        filePath: "C:\\Windows\\System32",
        processId: rnd.int(300, 20000),
        processCommandLine: command,
        processCreationTime: isoFromMs(startedMs, rnd.int(0, 9999)),
        parentProcessId: rnd.int(300, 20000),
        parentProcessCreationTime: isoFromMs(startedMs - rnd.int(1000, 86_400_000), rnd.int(0, 9999)),
        accountName: user.accountName,
        domainName: pools.netbios,
        userSid: user.userSid,
        deviceId: who.device.mdatpDeviceId,
      };
    }
    case "Mailbox":
      return { ...base, mailboxDisplayName: user.displayName, mailboxAddress: user.userPrincipalName, userPrincipalName: user.userPrincipalName, aadUserId: user.aadUserId };
    case "MailMessage":
      return {
        ...base,
        sender: `${rnd.pick(["billing", "it-support", "noreply", "hr"])}@${rnd.pick(["example.net", "example.org", "example.com"])}`,
        recipient: user.userPrincipalName,
        subject: rnd.pick(MAIL_SUBJECTS),
        deliveryAction: rnd.pick(["Delivered", "Blocked", "Junked", "Replaced"]),
        internetMessageId: `<${hash(rnd, 16)}@${rnd.pick(["mail.example.net", "smtp.example.org"])}>`,
      };
    case "MailCluster":
      return { ...base, clusterBy: "Subject;SenderIp;ContentHash", clusterByValue: hash(rnd, 40), emailCount: rnd.int(2, 120) };
    case "Registry":
      return {
        ...base,
        registryHive: "HKEY_LOCAL_MACHINE",
        registryKey: "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
        registryValueType: "String",
        registryValue: "C:\\Windows\\Temp\\svchost32.exe",
        deviceId: who.device.mdatpDeviceId,
      };
    case "SecurityGroup":
      return { ...base, securityGroupId: `S-1-5-21-${rnd.int(1e9, 4e9)}-${rnd.int(1e9, 4e9)}-${rnd.int(1e9, 4e9)}-${rnd.int(500, 520)}`, securityGroupName: rnd.pick(SECURITY_GROUPS) };
  }
}

/** Options for a brand-new incident (activity or control API). */
export interface NewIncidentInput {
  incidentId: number;
  createdTime: string;
  /** Template indices; drawn when absent. */
  plan?: number[];
}

/** A fresh incident as Defender creates it: Active, unassigned, Unknown/NotAvailable. */
export function newIncident(rnd: Random, tenant: SandboxTenant, input: NewIncidentInput): IncidentRecord {
  const drawn = drawPlan(rnd);
  const plan = input.plan ?? drawn.plan;
  const spread = input.plan ? false : drawn.spread;
  return {
    tenantId: tenant.id,
    incidentId: input.incidentId,
    redirectIncidentId: null,
    incidentName: incidentNameFor(plan, spread),
    createdTime: input.createdTime,
    lastUpdateTime: input.createdTime,
    assignedTo: null,
    classification: "Unknown",
    determination: "NotAvailable",
    status: "Active",
    severity: drawSeverity(rnd, plan),
    tags: NONE,
    systemTags: NONE,
    comments: NO_COMMENTS,
    seededComments: 0,
    description: null,
    summary: null,
    resolvingComment: null,
    lastModifiedBy: plan.length > 1 ? "Microsoft 365 Defender-AlertCorrelation" : "Microsoft 365 Defender-IncidentCreation",
    plan,
    spread,
    alertSeed: rnd.int(0, 0xffffffff),
  };
}

/** Picks a follow-on alert template for activity that adds an alert to an open incident. */
export function drawFollowOnTemplate(rnd: Random): number {
  return rnd.pick(FOLLOW_ON);
}

/** Comment texts background activity adds. */
export const ACTIVITY_COMMENTS: readonly string[] = COMMENTS;
