import { createServer, connect, type Server, type Socket } from 'node:net';

interface Queued {
  due: number;
  chunk: Buffer;
}

/**
 * One direction of a proxied connection. Chunks are released in arrival
 * order even if delayMs is lowered mid-flight, because a later chunk is never
 * due before an earlier one.
 */
class DelayedPipe {
  private queue: Queued[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastDue = 0;

  constructor(
    private readonly to: Socket,
    private readonly delayMs: () => number,
    private readonly onForward: (bytes: number) => void,
  ) {}

  push(chunk: Buffer): void {
    const delay = this.delayMs();
    if (delay <= 0 && this.queue.length === 0) {
      this.forward(chunk);
      return;
    }
    const due = Math.max(Date.now() + delay, this.lastDue);
    this.lastDue = due;
    this.queue.push({ due, chunk });
    this.schedule();
  }

  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    const head = this.queue[0];
    if (head === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        const now = Date.now();
        while (this.queue[0] !== undefined && this.queue[0].due <= now) {
          const item = this.queue.shift();
          if (item) this.forward(item.chunk);
        }
        this.schedule();
      },
      Math.max(0, head.due - Date.now()),
    );
  }

  private forward(chunk: Buffer): void {
    if (this.to.destroyed) return;
    this.to.write(chunk);
    this.onForward(chunk.length);
  }
}

interface Link {
  client: Socket;
  upstream: Socket;
  pipes: DelayedPipe[];
}

/** In-process TCP proxy for injecting latency, hangs and disconnects between a client and Redis. */
export class TcpProxy {
  /** Added latency per chunk, both directions. Read when each chunk arrives. */
  delayMs = 0;
  /** Accept and silently drop bytes in both directions: the peer sees a hang, not an RST. */
  blackhole = false;
  /** Destroy new connections as soon as they are accepted. */
  refuse = false;

  private readonly links = new Set<Link>();
  private _bytesToTarget = 0;
  private _chunksToTarget = 0;
  private closed = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly target: { host: string; port: number },
  ) {}

  static start(target: { host: string; port: number }): Promise<TcpProxy> {
    return new Promise<TcpProxy>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        const address = server.address();
        if (address === null || typeof address === 'string') {
          server.close();
          reject(new Error(`unexpected proxy address: ${String(address)}`));
          return;
        }
        const proxy = new TcpProxy(server, address.port, { ...target });
        server.on('connection', socket => proxy.accept(socket));
        resolve(proxy);
      });
    });
  }

  get connections(): number {
    return this.links.size;
  }

  get bytesToTarget(): number {
    return this._bytesToTarget;
  }

  get chunksToTarget(): number {
    return this._chunksToTarget;
  }

  cutAll(): void {
    for (const link of [...this.links]) this.drop(link);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cutAll();
    await new Promise<void>(resolve => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.refuse || this.closed) {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = connect({ host: this.target.host, port: this.target.port });
    upstream.setNoDelay(true);
    const link: Link = { client, upstream, pipes: [] };
    const toTarget = new DelayedPipe(
      upstream,
      () => this.delayMs,
      bytes => {
        this._bytesToTarget += bytes;
        this._chunksToTarget += 1;
      },
    );
    const toClient = new DelayedPipe(
      client,
      () => this.delayMs,
      () => undefined,
    );
    link.pipes.push(toTarget, toClient);
    this.links.add(link);

    client.on('data', chunk => {
      if (!this.blackhole) toTarget.push(chunk);
    });
    upstream.on('data', chunk => {
      if (!this.blackhole) toClient.push(chunk);
    });
    // Either side going away tears down the pair; pending delayed chunks are
    // discarded, which is what a real mid-flight disconnect looks like.
    const teardown = (): void => this.drop(link);
    client.on('error', teardown);
    upstream.on('error', teardown);
    client.on('close', teardown);
    upstream.on('close', teardown);
  }

  private drop(link: Link): void {
    if (!this.links.delete(link)) return;
    for (const pipe of link.pipes) pipe.clear();
    link.client.destroy();
    link.upstream.destroy();
  }
}
