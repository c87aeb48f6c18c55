import "reflect-metadata";
import { Field, ObjectType, registerEnumType } from "type-graphql";

export enum ServerMode {
  SANDBOX = "sandbox",
  AZURE = "azure",
}
registerEnumType(ServerMode, {
  name: "ServerMode",
  description: "SANDBOX: the built-in emulator stands in for Entra ID and Defender. AZURE: the real services.",
});

export enum IncidentsBackendKind {
  DEFENDER = "defender",
  GRAPH = "graph",
}
registerEnumType(IncidentsBackendKind, {
  name: "IncidentsBackend",
  description: "DEFENDER: api.security.microsoft.com/api/incidents. GRAPH: Microsoft Graph security incidents.",
});

@ObjectType({ description: "What this Crosswatch instance is connected to." })
export class ServerInfo {
  @Field(() => ServerMode)
  mode!: ServerMode;

  @Field(() => String, { description: "Crosswatch version." })
  version!: string;

  @Field(() => IncidentsBackendKind, { description: "Backend used for tenants that do not override it." })
  defaultIncidentsBackend!: IncidentsBackendKind;

  @Field(() => String, { description: "Entra ID authority host tokens are requested from." })
  authorityHost!: string;
}
