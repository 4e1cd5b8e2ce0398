import type { CounterState } from '../algorithms/index.js';
import type { Redis } from 'ioredis';
import type { RedisClient } from '../options.js';
import type { Decision, DecisionParams } from '../types.js';
import {
  ALGORITHM_CODES,
  DECIDE_SCRIPT,
  DECIDE_SHA,
  RECONCILE_SCRIPT,
  RECONCILE_SHA,
} from './redis-scripts.js';

/** A Redis answer: the decision, Redis's own clock, and the counter state it left. */
export type RedisDecision = Decision & { redisNow: number; state: CounterState };

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

  async consume(redisKey: string, params: DecisionParams): Promise<RedisDecision> {
    return toDecision(await this.run(redisKey, params, params.cost));
  }

  async get(redisKey: string, params: DecisionParams): Promise<RedisDecision | undefined> {
    const reply = await this.run(redisKey, params, 0);
    return Number(reply[8]) === 1 ? toDecision(reply) : undefined;
  }

  async reset(redisKey: string): Promise<void> {
    await this.client.del(redisKey);
  }

  /**
   * Adds `hits` admitted elsewhere (the memory store, during an outage) if the
   * window starting at `hitsStart` (Redis time) is still live. True if added.
   */
  async reconcile(
    redisKey: string,
    params: DecisionParams,
    hits: number,
    hitsStart: number,
  ): Promise<boolean> {
    const args = this.commonArgs(params);
    args.push(hits, hitsStart);
    return Number(await this.evalCached(RECONCILE_SHA, RECONCILE_SCRIPT, redisKey, args)) === 1;
  }

  private run(redisKey: string, params: DecisionParams, cost: number): Promise<Reply> {
    const args = this.commonArgs(params);
    args.push(cost);
    return this.evalCached(DECIDE_SHA, DECIDE_SCRIPT, redisKey, args) as Promise<Reply>;
  }

  // ARGV 1-4 of both scripts (see PRELUDE in redis-scripts.ts).
  private commonArgs(params: DecisionParams): (string | number)[] {
    return [
      ALGORITHM_CODES[params.algorithm],
      params.limit,
      params.windowMs,
      this.useParamsTime ? params.now : '',
    ];
  }

  private evalCached(
    sha: string,
    script: string,
    redisKey: string,
    args: (string | number)[],
  ): Promise<unknown> {
    return this.client.evalsha(sha, 1, redisKey, ...args).catch((error: unknown) => {
      if (!isNoScript(error)) throw error;
      return this.client.eval(script, 1, redisKey, ...args);
    });
  }
}

const preloaded = new WeakSet<object>();

// Loads the script whenever a connection becomes ready (first connect, and
// after a restart emptied the script cache), so the first decision, and the
// half-open probe after an outage, is one EVALSHA round trip rather than
// EVALSHA + EVAL, which could overrun the timeout. On a Cluster, on every
// node as it joins the client's pool and whenever it becomes ready again.
function preloadScript(client: RedisClient): void {
  if (preloaded.has(client)) return;
  preloaded.add(client);
  // The reconcile script is rare: it loads through NOSCRIPT when first used.
  const load = (connection: Redis): void => {
    connection.script('LOAD', DECIDE_SCRIPT).catch(() => undefined);
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
  };
}
