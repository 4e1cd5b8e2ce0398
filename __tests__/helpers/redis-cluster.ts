import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { RedisProcess } from './redis-process.js';

const REDIS_CLI = process.env.REDIS_CLI_BIN ?? 'redis-cli';
const SLOTS = 16384;

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    table[i] = crc;
  }
  return table;
})();

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ byte) & 0xff] ?? 0);
  }
  return crc;
}

/**
 * Redis Cluster hash slot (CRC16-XMODEM mod 16384, honouring `{hash tags}`).
 * Implemented here because cluster-key-slot ships no typings and is only a
 * transitive dependency.
 */
export function keySlot(key: string): number {
  let hashed = key;
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    // An empty tag "{}" means the whole key is hashed, per the cluster spec.
    if (close > open + 1) hashed = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(hashed, 'utf8')) % SLOTS;
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms));

function run(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err)
        reject(new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

export interface RedisClusterOptions {
  /** Number of master nodes; default 3. */
  masters?: number;
  /** Replicas per master (`--cluster-replicas`); default 0. */
  replicas?: number;
  /**
   * cluster-node-timeout; default 2000. Also sets how long a restarted master
   * waits before reporting cluster_state:ok again (clamped to 500..5000 ms).
   */
  nodeTimeoutMs?: number;
}

async function startNode(dir: string, nodeTimeoutMs: number): Promise<RedisProcess> {
  let lastError: unknown;
  // Ports are picked up front because the config file name embeds the port;
  // a port stolen between pick and bind just means trying a new pair.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    // Explicit bus port: the default (port + 10000) can exceed 65535 for
    // ephemeral ports, or already be taken.
    const busPort = await freePort();
    try {
      return await RedisProcess.start({
        port,
        cwd: dir,
        startTimeoutMs: 3000,
        args: [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          String(nodeTimeoutMs),
          '--cluster-port',
          String(busPort),
          // Replicas sync at once instead of after the default 5 s wait.
          '--repl-diskless-sync-delay',
          '0',
        ],
      });
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

export class RedisCluster {
  private stopped = false;

  private constructor(
    readonly nodes: RedisProcess[],
    readonly dir: string,
  ) {}

  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const masters = options.masters ?? 3;
    const replicas = options.replicas ?? 0;
    if (masters < 3) throw new Error('redis-cli --cluster create needs at least 3 masters');
    const dir = mkdtempSync(join(tmpdir(), 'rrl-cluster-'));
    const settled = await Promise.allSettled(
      Array.from({ length: masters * (1 + replicas) }, () =>
        startNode(dir, options.nodeTimeoutMs ?? 2000),
      ),
    );
    const nodes = settled.flatMap(r => (r.status === 'fulfilled' ? [r.value] : []));
    const cluster = new RedisCluster(nodes, dir);
    try {
      const failed = settled.find(r => r.status === 'rejected');
      if (failed) throw failed.reason;
      await run(
        REDIS_CLI,
        [
          '--cluster',
          'create',
          ...nodes.map(n => `${n.host}:${n.port}`),
          '--cluster-replicas',
          String(replicas),
          '--cluster-yes',
        ],
        20_000,
      );
      await cluster.waitUntilHealthy();
      if (replicas > 0) await cluster.waitReplicasInSync();
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  startupNodes(): { host: string; port: number }[] {
    return this.nodes.map(n => ({ host: n.host, port: n.port }));
  }

  /**
   * Polls until every running node reports cluster_state:ok and knows every
   * other node. Also useful after restarting a node, since a rejoining node
   * briefly reports fail/ unknown peers.
   */
  async waitUntilHealthy(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastInfo = '';
    for (;;) {
      const infos = await Promise.all(
        this.nodes
          .filter(n => n.isRunning)
          .map(n => n.command('CLUSTER', 'INFO').catch((err: Error) => `error: ${err.message}`)),
      );
      const healthy = infos.every(
        info =>
          /^cluster_state:ok\r?$/m.test(info) &&
          new RegExp(`^cluster_known_nodes:${this.nodes.length}\\r?$`, 'm').test(info) &&
          new RegExp(`^cluster_slots_ok:${SLOTS}\\r?$`, 'm').test(info),
      );
      if (healthy) return;
      lastInfo = infos.join('\n---\n');
      if (Date.now() > deadline) {
        throw new Error(`cluster not healthy after ${timeoutMs} ms:\n${lastInfo}`);
      }
      await sleep(100);
    }
  }

  /** Polls until every running replica has its master link up (initial sync done). */
  async waitReplicasInSync(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const infos = await Promise.all(
        this.nodes
          .filter(n => n.isRunning && !n.isFrozen)
          .map(n =>
            n.command('INFO', 'replication').catch((err: Error) => `error: ${err.message}`),
          ),
      );
      const syncing = infos.filter(
        info => /^role:slave\r?$/m.test(info) && !/^master_link_status:up\r?$/m.test(info),
      );
      if (syncing.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`replicas not in sync after ${timeoutMs} ms:\n${syncing.join('\n---\n')}`);
      }
      await sleep(50);
    }
  }

  /** Owner of a slot according to the first reachable node's CLUSTER NODES. */
  async masterForSlot(slot: number): Promise<RedisProcess> {
    const table = await this.clusterNodes();
    for (const line of table.split('\n')) {
      const fields = line.trim().split(' ');
      const address = fields[1];
      const flags = fields[2] ?? '';
      const port = address ? /:(\d+)@/.exec(address)?.[1] : undefined;
      if (port === undefined || !flags.split(',').includes('master')) continue;
      const owns = fields.slice(8).some(range => {
        if (range.startsWith('[')) return false; // migrating/importing marker, not ownership
        const [from, to] = range.split('-');
        const lo = Number(from);
        const hi = to === undefined ? lo : Number(to);
        return slot >= lo && slot <= hi;
      });
      if (!owns) continue;
      const node = this.nodes.find(n => n.port === Number(port));
      if (!node) throw new Error(`slot ${slot} owned by unknown node ${address}`);
      return node;
    }
    throw new Error(`no master owns slot ${slot}:\n${table}`);
  }

  /**
   * The node replicating `master`, according to CLUSTER NODES. A replica's
   * role reaches the other nodes by gossip, so on a loaded machine it may
   * take a moment after start-up: asked again for up to 10 s.
   */
  async replicaOf(master: RedisProcess): Promise<RedisProcess> {
    const masterId = (await master.command('CLUSTER', 'MYID')).trim();
    const deadline = Date.now() + 10_000;
    for (;;) {
      const table = await this.clusterNodes();
      for (const line of table.split('\n')) {
        const fields = line.trim().split(' ');
        const flags = (fields[2] ?? '').split(',');
        if (!flags.includes('slave') || fields[3] !== masterId) continue;
        const port = Number(/:(\d+)@/.exec(fields[1] ?? '')?.[1]);
        const node = this.nodes.find(n => n.port === port);
        if (node) return node;
      }
      if (Date.now() > deadline) {
        throw new Error(`no replica of ${master.port} (${masterId}):\n${table}`);
      }
      await new Promise(resolve => setTimeout(resolve, 100));
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.nodes.map(n => n.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async clusterNodes(): Promise<string> {
    const errors: string[] = [];
    for (const node of this.nodes) {
      if (!node.isRunning || node.isFrozen) continue;
      try {
        return await node.command('CLUSTER', 'NODES');
      } catch (err) {
        errors.push(`${node.port}: ${(err as Error).message}`);
      }
    }
    throw new Error(`no node answered CLUSTER NODES: ${errors.join('; ') || 'none running'}`);
  }
}
