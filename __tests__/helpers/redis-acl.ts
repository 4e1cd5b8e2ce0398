import { connect, type Socket } from 'node:net';
import { rawCommand, type RespReply } from './resp.js';
import type { RedisProcess } from './redis-process.js';

/**
 * (Re)creates ACL user `user` with exactly `rules` (an ACL rule string such as
 * the package's `redisAclRules()`), password `password`, and no other right.
 */
export async function setAclUser(
  redis: RedisProcess,
  user: string,
  password: string,
  rules: string,
): Promise<void> {
  const args = rules.split(/\s+/).filter(rule => rule !== '');
  await redis.command('ACL', 'SETUSER', user, 'reset', 'on', `>${password}`, ...args);
}

/** One ACL LOG entry: what was denied (`object`: a command or key) and why. */
export type AclDenial = { reason: string; object: string; username: string };

/** The ACL denials Redis logged since the last `ACL LOG RESET`. */
export async function aclDenials(redis: RedisProcess): Promise<AclDenial[]> {
  const reply = await rawCommand(redis.port, ['ACL', 'LOG'], { host: redis.host });
  const entries = Array.isArray(reply) ? reply : [];
  return entries.map(entry => {
    const fields = new Map<string, RespReply>();
    const flat = Array.isArray(entry) ? entry : [];
    for (let i = 0; i + 1 < flat.length; i += 2) fields.set(String(flat[i]), flat[i + 1] ?? null);
    return {
      reason: String(fields.get('reason')),
      object: String(fields.get('object')),
      username: String(fields.get('username')),
    };
  });
}

// Subcommands are part of the ACL name for these (`script|load`).
const CONTAINERS = new Set(['script', 'client', 'acl', 'config', 'function', 'object', 'memory']);
const LINE = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] "((?:[^"\\]|\\.)*)"(?: "((?:[^"\\]|\\.)*)")?/;

/**
 * Records, by ACL command name, every command a redis-server executes, with
 * MONITOR on a connection of its own. Commands a Lua script runs (`[0 lua]`)
 * count for the client whose EVAL/EVALSHA ran them. Commands Redis refused
 * (ACL) are not executed and so not seen: pair with `aclDenials()`.
 */
export class CommandMonitor {
  private readonly seen = new Map<string, Map<string, number>>();
  private buffer = '';
  private lastClient = '';

  private constructor(private readonly socket: Socket) {}

  static start(redis: RedisProcess): Promise<CommandMonitor> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: redis.host, port: redis.port });
      const monitor = new CommandMonitor(socket);
      let started = false;
      socket.on('error', error => {
        if (!started) reject(error);
      });
      socket.on('data', chunk => {
        monitor.buffer += chunk.toString('utf8');
        const lines = monitor.buffer.split('\r\n');
        monitor.buffer = lines.pop() ?? '';
        for (const line of lines) {
          if (!started && line === '+OK') {
            started = true;
            resolve(monitor);
          } else monitor.record(line);
        }
      });
      socket.write('MONITOR\r\n');
    });
  }

  /**
   * Command counts by ACL name (`evalsha`, `script|load`) from every client
   * except those at the `127.0.0.1:<port>` addresses in `excludePorts`.
   */
  counts(excludePorts: readonly number[] = []): Map<string, number> {
    const total = new Map<string, number>();
    for (const [client, names] of this.seen) {
      if (excludePorts.some(port => client.endsWith(`:${port}`))) continue;
      for (const [name, count] of names) total.set(name, (total.get(name) ?? 0) + count);
    }
    return total;
  }

  stop(): void {
    this.socket.destroy();
  }

  private record(line: string): void {
    const match = LINE.exec(line);
    if (!match) return;
    const [, where = '', command = '', sub] = match;
    const client = where === 'lua' ? this.lastClient : where;
    if (where !== 'lua') this.lastClient = where;
    let name = command.toLowerCase();
    if (CONTAINERS.has(name) && sub !== undefined) name += `|${sub.toLowerCase()}`;
    let names = this.seen.get(client);
    if (!names) {
      names = new Map();
      this.seen.set(client, names);
    }
    names.set(name, (names.get(name) ?? 0) + 1);
  }
}
