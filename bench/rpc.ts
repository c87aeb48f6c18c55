import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/**
 * A bench child process (sandbox, server) and a tiny request/response protocol over Node's IPC channel.
 * The sandbox and the server each get their own process so that neither steals the other's event loop:
 * on a 2-core machine the sandbox's token signing and JSON serialisation would otherwise be billed to
 * Crosswatch, and a load generator in the server's process would halve its throughput.
 */

type Handler = (params: any) => unknown;

interface Request {
  id: number;
  method: string;
  params: unknown;
}

interface Response {
  id: number;
  result?: unknown;
  error?: string;
}

export interface Child {
  call<T = unknown>(method: string, params?: unknown): Promise<T>;
  /** Ends the child (closing what it runs first) and waits for it to exit. */
  close(): Promise<void>;
  pid: number;
}

/** Starts `bench/<script>` under tsx with an IPC channel and resolves once it says it is ready. */
export async function startChild(script: string, execArgv: string[] = []): Promise<Child> {
  const child: ChildProcess = fork(fileURLToPath(new URL(script, import.meta.url)), [], {
    execArgv: ["--import", "tsx", ...execArgv],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  void exited.then((code) => {
    for (const p of pending.values()) p.reject(new Error(`bench child ${script} exited (${code}) during a call`));
    pending.clear();
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.once("message", (message) => ((message as { ready?: boolean }).ready ? resolve() : reject(new Error(String(message)))));
    child.once("exit", (code) => reject(new Error(`bench child ${script} exited (${code}) before it was ready`)));
  });
  child.on("message", (message) => {
    const response = message as Response;
    const entry = pending.get(response.id);
    if (!entry) return;
    pending.delete(response.id);
    if (response.error !== undefined) entry.reject(new Error(`${script}: ${response.error}`));
    else entry.resolve(response.result);
  });
  await ready;
  return {
    pid: child.pid!,
    call<T>(method: string, params?: unknown): Promise<T> {
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ id, method, params } satisfies Request);
      });
    },
    async close() {
      if (child.exitCode !== null) return;
      child.send({ id: 0, method: "exit", params: null } satisfies Request);
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * The child side: answers calls with `handlers`, `exit` runs `onExit` and ends the process. The
 * process also ends when the parent goes away, so an interrupted bench leaves nothing behind.
 */
export function serveParent(handlers: Record<string, Handler>, onExit: () => Promise<void>): void {
  const send = process.send?.bind(process);
  if (!send) throw new Error("a bench child must be started by bench/run.ts (no IPC channel)");
  const exit = () => void onExit().finally(() => process.exit(0));
  process.on("disconnect", exit);
  process.on("message", (message) => {
    const { id, method, params } = message as Request;
    if (method === "exit") return exit();
    const handler = handlers[method];
    void (async () => {
      try {
        if (!handler) throw new Error(`no method ${method}`);
        send({ id, result: await handler(params) } satisfies Response);
      } catch (error) {
        send({ id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) } satisfies Response);
      }
    })();
  });
  send({ ready: true });
}
