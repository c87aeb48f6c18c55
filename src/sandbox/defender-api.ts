import type { FastifyInstance } from "fastify";
import type { SandboxServices } from "./services.js";

/** Placeholder until implemented. */
export function registerDefenderRoutes(app: FastifyInstance, services: SandboxServices): void {
  void app;
  void services;
}
