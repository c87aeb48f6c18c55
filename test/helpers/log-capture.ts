import { Writable } from "node:stream";
import type { Logger } from "pino";
import { createLogger } from "../../src/logger.js";

/** A real pino logger whose JSON lines are kept in memory, so tests can read (and scan) every log line. */
export function captureLogger(level = "debug"): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(...String(chunk).split("\n").filter((l) => l.length > 0));
      callback();
    },
  });
  return { logger: createLogger(level, stream), lines };
}
