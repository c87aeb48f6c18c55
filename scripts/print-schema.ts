import { writeFile } from "node:fs/promises";
import { printCrosswatchSchema } from "../src/schema/build-schema.js";

/** `npm run schema`: writes schema.graphql from the type-graphql classes (the file codegen.yml reads). */
const target = process.argv[2] ?? "schema.graphql";
await writeFile(target, await printCrosswatchSchema());
process.stdout.write(`wrote ${target}\n`);
