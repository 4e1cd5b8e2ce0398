import { Redis, type RedisOptions } from 'ioredis';
import { RedisProcess } from './redis-process.js';

let counter = 0;

/** A rule name no other test uses, so shared stores never mix counters. */
export function uniqueName(prefix = 'rule'): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

/** A client tuned as the README recommends: fail fast, never queue. `extra` overrides. */
export function failFastClient(port: number, protocol: 2 | 3 = 3, extra: RedisOptions = {}): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    protocol,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: 500,
    retryStrategy: () => 50,
    // A dead Redis never answers the graceful close; don't wait 2 s for it.
    ...({ disconnectTimeout: 100 } as RedisOptions),
    ...extra,
  });
  client.on('error', () => undefined);
  return client;
}

export async function ready(client: Redis): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`client not ready: ${client.status}`)), 5000);
    client.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Resolves once `predicate` holds, polling every `everyMs`; rejects after `withinMs`. */
export async function eventually(
  predicate: () => boolean | Promise<boolean>,
  withinMs = 5000,
  everyMs = 20,
): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${withinMs} ms`);
    await new Promise(resolve => setTimeout(resolve, everyMs));
  }
}

/** A logger double that records what was said. */
export function recordingLogger(): {
  warn: jest.Mock;
  error: jest.Mock;
  info: jest.Mock;
} {
  return { warn: jest.fn(), error: jest.fn(), info: jest.fn() };
}

/**
 * One redis-server for a test file, with a fail-fast client and an admin
 * connection: started before the file's tests (handed to `use`), stopped
 * after them.
 */
export function redisPerFile(
  use: (started: { redis: RedisProcess; client: Redis; admin: Redis }) => void,
): void {
  let started: { redis: RedisProcess; client: Redis; admin: Redis } | undefined;
  beforeAll(async () => {
    const redis = await RedisProcess.start();
    started = { redis, client: failFastClient(redis.port), admin: failFastClient(redis.port) };
    await Promise.all([ready(started.client), ready(started.admin)]);
    use(started);
  });
  afterAll(async () => {
    started?.client.disconnect();
    started?.admin.disconnect();
    await started?.redis.stop();
  });
}

/**
 * The units Redis counts for one counter hash: a window's count, or a token
 * bucket's debt in whole units (`windowMs / limit` ms each), at Redis's now.
 */
export async function countedUnits(
  admin: Redis,
  redisKey: string,
  algorithm: string,
  windowMs: number,
  limit: number,
): Promise<number> {
  const [a, time] = await Promise.all([admin.hget(redisKey, 'a'), admin.time()]);
  if (algorithm !== 'token-bucket' || a === null) return Number(a);
  const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
  return Math.ceil((Number(a) - now) / (windowMs / limit));
}
