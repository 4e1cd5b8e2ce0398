import type { CounterState } from '../algorithms/index.js';
import type { Redis } from 'ioredis';
import type { RedisClient } from '../options.js';
import type { Decision, DecisionParams } from '../types.js';
import { ALL_SCRIPTS, DECIDE_SCRIPTS, RESET_SCRIPT, type Script } from './redis-scripts.js';

/** A Redis answer: the decision, Redis's own clock, and the counter state it left. */
export type RedisDecision = Decision & {
  redisNow: number;
  state: CounterState;
  /** The key held live state (or had it restored) when the script ran. */
  live: boolean;
  /**
   * The script did not decide: it stores less than the caller's view said
   * (a '~floor' hint), so the call must be made again with the whole view.
   */
  needsView: boolean;
};

type Reply = [number, number, number, number, number, number, number, number, number];

/**
 * Counters in Redis, decided atomically by one Lua script per call: EVALSHA,
 * and EVAL only after NOSCRIPT (script cache flushed, Redis restarted or
 * failed over), which also reloads the script for the calls after it.
 */
export class RedisStore {
  constructor(
    readonly client: RedisClient,
    /** Use `params.now` instead of Redis TIME (tests with a controlled clock). */
    private readonly useParamsTime: boolean,
  ) {
    preloadScript(client);
  }

  /**
   * Decides `cost` units (the same in every group) for one key, or for
   * several keys of one hash tag (a limiter's policies) in one script call:
   * counted in all of them or in none. Each group carries its key's params
   * and `continuity` (what this instance holds for the key; see
   * OutageContinuity), merged by the script in the same step. One decision
   * per key, in order; a single one with `needsView` when the call must be
   * made again with every whole view.
   */
  async decide(
    redisKeys: readonly string[],
    groups: readonly { params: DecisionParams; continuity: readonly number[] | undefined }[],
  ): Promise<RedisDecision[]> {
    const first = groups[0]!.params;
    const script = DECIDE_SCRIPTS[first.algorithm];
    if (groups.length === 1) {
      const args: (string | number)[] = [first.limit, first.windowMs, this.time(first), first.cost];
      const { continuity } = groups[0]!;
      if (continuity !== undefined) args.push(...continuity);
      return [toDecision((await this.evalCached(script, redisKeys, args)) as Reply)];
    }
    const args: (string | number)[] = [this.time(first), first.cost];
    for (const { params, continuity } of groups) {
      args.push(2 + (continuity?.length ?? 0), params.limit, params.windowMs);
      if (continuity !== undefined) args.push(...continuity);
    }
    const reply = (await this.evalCached(script, redisKeys, args)) as number[];
    if (Number(reply[0]) === -1) return [toDecision([-1, 0, 0, 0, 0, 0, 0, 0, 0])];
    return redisKeys.map((_, i) => toDecision(reply.slice(i * 9, i * 9 + 9) as Reply));
  }

  /**
   * Forgets the keys (a limiter's policies, `windowsMs[i]` the window of
   * `redisKeys[i]`), leaving reset markers (see RESET in redis-scripts.ts).
   */
  async reset(
    redisKeys: readonly string[],
    windowsMs: readonly number[],
    params: DecisionParams,
  ): Promise<void> {
    await this.evalCached(RESET_SCRIPT, redisKeys, [this.time(params), ...windowsMs]);
  }

  private time(params: DecisionParams): number | string {
    return this.useParamsTime ? params.now : '';
  }

  private evalCached(
    script: Script,
    redisKeys: readonly string[],
    args: (string | number)[],
  ): Promise<unknown> {
    const { length } = redisKeys;
    return this.client
      .evalsha(script.sha, length, ...redisKeys, ...args)
      .catch((error: unknown) => {
        if (!isNoScript(error)) throw error;
        return this.client.eval(script.source, length, ...redisKeys, ...args);
      });
  }
}

const preloaded = new WeakSet<object>();

// Loads the scripts whenever a connection becomes ready (first connect, and
// after a restart emptied the script cache), so the first decision, and the
// half-open probe after an outage, is one EVALSHA round trip rather than
// EVALSHA + EVAL, which could overrun the timeout. On a Cluster, on every
// node as it joins the client's pool and whenever it becomes ready again.
function preloadScript(client: RedisClient): void {
  if (preloaded.has(client)) return;
  preloaded.add(client);
  const load = (connection: Redis): void => {
    for (const script of ALL_SCRIPTS) {
      connection.script('LOAD', script.source).catch(() => undefined);
    }
  };
  const loadWhenReady = (connection: Redis): void => {
    if (connection.status === 'ready') load(connection);
    connection.on('ready', () => load(connection));
  };
  if ('nodes' in client) {
    // Cluster nodes connect lazily, on their first command, and a restarted
    // node comes back as a new connection: loading as it joins the pool puts
    // SCRIPT LOAD first in its queue, ahead of any EVALSHA ('ready' comes
    // only after the queue has been sent).
    for (const node of client.nodes('all')) loadWhenReady(node);
    client.on('+node', (node: Redis) => {
      load(node);
      node.on('ready', () => load(node));
    });
  } else {
    loadWhenReady(client);
  }
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

function toDecision(reply: Reply): RedisDecision {
  return {
    allowed: Number(reply[0]) === 1,
    remaining: Number(reply[1]),
    resetAt: Number(reply[2]),
    retryAfterMs: Number(reply[3]),
    redisNow: Number(reply[4]),
    state: { a: Number(reply[5]), b: Number(reply[6]), c: Number(reply[7]) },
    live: Number(reply[8]) === 1,
    needsView: Number(reply[0]) === -1,
  };
}
