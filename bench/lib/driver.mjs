// @ts-check
// In-process drivers shared by bench/inproc.mjs and bench/scale.mjs: fake
// req/res for Connect-style middlewares, a bounded concurrent request loop,
// and CPU readings (this process, redis-server through INFO).
import { performance } from 'node:perf_hooks';

/** What a middleware sees of the response: Node's header bookkeeping, lowercased names. */
export class FakeResponse {
  constructor() {
    /** @type {Record<string, unknown>} */
    this.headers = Object.create(null);
    this.statusCode = 200;
    this.headersSent = false;
    /** @type {(() => void) | undefined} */
    this.onEnd = undefined;
  }
  /** @param {string} name @param {unknown} value */
  setHeader(name, value) {
    this.headers[name.toLowerCase()] = value;
    return this;
  }
  /** @param {string} name */
  getHeader(name) {
    return this.headers[name.toLowerCase()];
  }
  /** @param {string} name */
  removeHeader(name) {
    delete this.headers[name.toLowerCase()];
  }
  /** @param {string} name */
  hasHeader(name) {
    return name.toLowerCase() in this.headers;
  }
  /** @param {number} code */
  status(code) {
    this.statusCode = code;
    return this;
  }
  end() {
    this.headersSent = true;
    this.onEnd?.();
    return this;
  }
  send() {
    return this.end();
  }
  json() {
    return this.end();
  }
  on() {
    return this;
  }
  once() {
    return this;
  }
}

const socket = { remoteAddress: '127.0.0.1' };
/** A fresh request object, as every HTTP request is (the middleware counts one object once). */
export const fakeRequest = (ip = '127.0.0.1') => ({
  ip,
  socket,
  headers: {},
  method: 'GET',
  url: '/',
  originalUrl: '/',
  path: '/',
});

/**
 * Chains Connect-style middlewares into one (what `app.use(a, b, c)` runs).
 * @param {Function[]} list
 */
export function chain(list) {
  if (list.length === 1) return list[0];
  return (/** @type {any} */ req, /** @type {any} */ res, /** @type {Function} */ next) => {
    let i = 0;
    const step = (/** @type {unknown} */ error) => {
      if (error !== undefined || i === list.length) return next(error);
      list[i++](req, res, step);
    };
    step(undefined);
  };
}

/**
 * One request through `mw`: resolves with 'next' (admitted, passed on) or
 * 'end' (answered by the middleware, e.g. 429); rejects on next(error).
 * @param {Function} mw
 * @param {string} [ip]
 * @returns {Promise<{ outcome: 'next' | 'end', res: FakeResponse }>}
 */
export function request(mw, ip) {
  return new Promise((resolve, reject) => {
    const res = new FakeResponse();
    res.onEnd = () => resolve({ outcome: 'end', res });
    mw(fakeRequest(ip), res, (/** @type {unknown} */ error) =>
      error === undefined ? resolve({ outcome: 'next', res }) : reject(error),
    );
  });
}

/**
 * `concurrency` loops, each awaiting one call at a time, until `ms` have
 * passed or `max` calls were made. Latency per call in ms.
 * @param {(i: number) => Promise<unknown>} call
 * @param {{ ms: number, concurrency: number, max?: number, latencies?: boolean }} options
 */
export async function drive(call, { ms, concurrency, max = Infinity, latencies = false }) {
  let started = 0;
  let done = 0;
  let errors = 0;
  /** @type {unknown} */
  let firstError;
  const lat = latencies ? new Float64Array(1 << 20) : undefined;
  let nLat = 0;
  const deadline = performance.now() + ms;
  const loop = async () => {
    while (started < max && performance.now() < deadline) {
      const i = started++;
      const t0 = lat ? performance.now() : 0;
      try {
        await call(i);
      } catch (error) {
        errors++;
        firstError ??= error;
      }
      if (lat && nLat < lat.length) lat[nLat++] = performance.now() - t0;
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { done, errors, firstError, latencies: lat ? lat.subarray(0, nLat) : undefined };
}

/** user+system CPU of this process (all threads), µs. */
export const processCpuUs = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

/**
 * redis-server counters: CPU (used_cpu_user + used_cpu_sys from INFO cpu:
 * getrusage, µs resolution) and socket reads (total_reads_processed), so a
 * run can tell how many commands Redis got per read() (what pipelining buys).
 * @param {import('ioredis').Redis} admin
 */
export async function redisCounters(admin) {
  const info = String(await admin.call('INFO', 'cpu', 'stats'));
  const num = (/** @type {string} */ field) =>
    Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1]);
  return {
    cpuUs: (num('used_cpu_user') + num('used_cpu_sys')) * 1e6,
    reads: num('total_reads_processed'),
  };
}

/**
 * redis-server CPU, µs (see redisCounters).
 * @param {import('ioredis').Redis} admin
 */
export async function redisCpuUs(admin) {
  return (await redisCounters(admin)).cpuUs;
}
