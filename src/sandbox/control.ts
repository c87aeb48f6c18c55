import type { FastifyInstance } from "fastify";
import type { SandboxServices } from "./services.js";

/** Placeholder until implemented. */
export function registerControlRoutes(app: FastifyInstance, services: SandboxServices): void {
  void app;
  void services;
}
