import "reflect-metadata";
import { Query, Resolver } from "type-graphql";
import { ServerInfo } from "../schema/server-info.type.js";

/** Resolves `serverInfo` from a snapshot taken when the app was built. */
@Resolver(() => ServerInfo)
export class ServerInfoResolver {
  constructor(private readonly info: ServerInfo) {}

  @Query(() => ServerInfo, { description: "What this instance runs against: sandbox or Azure, and which backend." })
  serverInfo(): ServerInfo {
    return this.info;
  }
}
