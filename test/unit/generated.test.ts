import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { generate, loadCodegenConfig } from "@graphql-codegen/cli";

/** What `generate(config, false)` returns: the files it would write. */
interface FileOutput {
  filename: string;
  content: string;
}

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const GENERATED = resolve(ROOT, "src/generated");

describe("src/generated/", () => {
  it("is what codegen.yml makes of schema.graphql and operations/ (run `npm run codegen` after changing either)", async () => {
    const { config } = await loadCodegenConfig({ configFilePath: resolve(ROOT, "codegen.yml") });
    // Generated in memory with the committed config: nothing is written, so a stale tree stays visible.
    const outputs: FileOutput[] = await generate({ ...config, cwd: ROOT, silent: true }, false);
    const expected = new Map(outputs.map((o) => [relative(GENERATED, resolve(ROOT, o.filename)), o.content]));
    assert.ok(expected.size > 0, "codegen produced no files");

    const committed = (await readdir(GENERATED)).sort();
    assert.deepEqual(committed, [...expected.keys()].sort(), "src/generated/ holds exactly the files codegen writes");
    for (const [name, content] of expected) {
      const onDisk = await readFile(resolve(GENERATED, name), "utf8");
      assert.ok(onDisk === content, `src/generated/${name} is stale: run \`npm run codegen\``);
    }
  });
});
