import { request, type Dispatcher } from "undici";

/** What a person's browser does with a consent link: open the page, pick a tenant, click a button. */
export async function answerConsentPage(
  link: string,
  options: { dispatcher: Dispatcher; decision: "accept" | "decline"; tenantId?: string },
): Promise<{ location: string; status: number }> {
  const pageResponse = await request(link, { dispatcher: options.dispatcher });
  const html = await pageResponse.body.text();
  if (pageResponse.statusCode !== 200) throw new Error(`consent page answered ${pageResponse.statusCode}: ${html.slice(0, 300)}`);
  const action = decode(/<form method="post" action="([^"]+)"/.exec(html)?.[1] ?? "");
  if (!action) throw new Error("no consent form on the page");
  const fields = new URLSearchParams();
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields.set(decode(match[1]!), decode(match[2]!));
  }
  if (html.includes('<select id="tenant" name="tenant"')) {
    if (!options.tenantId) throw new Error("the page asks for a tenant and none was given");
    fields.set("tenant", options.tenantId);
  }
  fields.set("decision", options.decision);
  const origin = new URL(link).origin;
  const decided = await request(`${origin}${action}`, {
    method: "POST",
    dispatcher: options.dispatcher,
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: fields.toString(),
  });
  await decided.body.dump();
  const location = decided.headers.location;
  if (typeof location !== "string") throw new Error(`no redirect after the decision (status ${decided.statusCode})`);
  return { location, status: decided.statusCode };
}

function decode(text: string): string {
  return text
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n: string) => String.fromCharCode(parseInt(n, 16)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}
