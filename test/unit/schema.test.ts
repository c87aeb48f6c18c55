import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { buildSchema, parse, printType, isIntrospectionType, type DocumentNode } from "graphql";
import { printCrosswatchSchema, printCrosswatchSubgraphSchema } from "../../src/schema/build-schema.js";

/** `@key` field sets by type name, as declared in an SDL document. */
function keysOf(document: DocumentNode): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  for (const definition of document.definitions) {
    if (definition.kind !== "ObjectTypeDefinition") continue;
    for (const directive of definition.directives ?? []) {
      if (directive.name.value !== "key") continue;
      const fields = directive.arguments?.find((a) => a.name.value === "fields")?.value;
      if (fields?.kind === "StringValue") keys.set(definition.name.value, [...(keys.get(definition.name.value) ?? []), fields.value]);
    }
  }
  return keys;
}

describe("schema.graphql", () => {
  it("is what the code builds (run `npm run schema` after changing a type)", async () => {
    const committed = await readFile(new URL("../../schema.graphql", import.meta.url), "utf8");
    assert.equal(committed, await printCrosswatchSchema());
  });

  it("is the plain public SDL: no federation directives, no _service or _entities", async () => {
    const committed = await readFile(new URL("../../schema.graphql", import.meta.url), "utf8");
    assert.doesNotMatch(committed, /@key|@link|_service|_entities|_Any/);
  });
});

describe("subgraph SDL (`_service { sdl }`)", () => {
  it("links Federation 2 and declares the entity keys other subgraphs extend", async () => {
    const sdl = await printCrosswatchSubgraphSchema();
    assert.match(sdl, /@link\(url: "https:\/\/specs\.apollo\.dev\/federation\/v2\.\d+", import: \["@key", "@shareable"\]\)/);
    const keys = keysOf(parse(sdl));
    assert.deepEqual(Object.fromEntries(keys), { Tenant: ["id"], Incident: ["tenantId incidentId"] });
  });

  it("describes the same types and fields as schema.graphql", async () => {
    const publicSchema = buildSchema(await printCrosswatchSchema());
    // The subgraph SDL's directives are federation's; strip them to compare the shapes alone.
    const subgraph = buildSchema(await printCrosswatchSubgraphSchema(), { assumeValidSDL: true });
    for (const type of Object.values(publicSchema.getTypeMap())) {
      if (isIntrospectionType(type) || type.name.startsWith("__")) continue;
      const twin = subgraph.getType(type.name);
      assert.ok(twin, `${type.name} is missing from the subgraph`);
      assert.equal(printType(twin), printType(type), `${type.name} differs between schema.graphql and the subgraph`);
    }
  });
});
