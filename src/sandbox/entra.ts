import type { FastifyInstance } from "fastify";
import type { SandboxServices } from "./services.js";

/** Placeholder until implemented. */
export function registerEntraRoutes(app: FastifyInstance, services: SandboxServices): void {
  void app;
  void services;
}
