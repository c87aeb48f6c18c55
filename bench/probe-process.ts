import { connect } from "node:net";
import { serveParent } from "./rpc.js";

/**
 * A liveness prober in a process of its own, as a kubelet is: its timings are not delayed by the bench's
 * own event loop (which is busy sending a burst). Each probe is a new connection and one
 * `GET /healthz` with `Connection: close` (the kubelet keeps no connection alive between probes),
 * timed from connecting to the status line; probes are sequential, `intervalMs` apart.
 */

let running: { stop: () => void; done: Promise<number[]> } | undefined;

function probeOnce(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const socket = connect({ host, port }, () => {
      socket.write(`GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    });
    let head = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      head += chunk;
      if (!head.includes("\r\n")) return;
      const elapsed = performance.now() - t0;
      socket.destroy();
      if (!head.startsWith("HTTP/1.1 200")) reject(new Error(`/healthz answered ${head.split("\r\n")[0]}`));
      else resolve(elapsed);
    });
    socket.on("error", reject);
  });
}

serveParent(
  {
    start(params: { url: string; intervalMs: number }) {
      const { hostname, port } = new URL(params.url);
      let stopped = false;
      const done = (async () => {
        const latencies: number[] = [];
        while (!stopped) {
          latencies.push(await probeOnce(hostname, Number(port)));
          await new Promise((resolve) => setTimeout(resolve, params.intervalMs));
        }
        return latencies;
      })();
      running = { stop: () => (stopped = true), done };
      return null;
    },
    async stop() {
      if (!running) throw new Error("not probing");
      running.stop();
      const latencies = await running.done;
      running = undefined;
      return latencies;
    },
  },
  async () => {
    running?.stop();
  },
);
