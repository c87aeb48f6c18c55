import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { printCrosswatchSchema } from "../../src/schema/build-schema.js";

describe("schema.graphql", () => {
  it("is what the code builds (run `npm run schema` after changing a type)", async () => {
    const committed = await readFile(new URL("../../schema.graphql", import.meta.url), "utf8");
    assert.equal(committed, await printCrosswatchSchema());
  });
});
