// What the default headers cost in process: this package's memory-only middleware with
// headers 'both' (default), 'standard' and false, beside rate-limiter-flexible's memory
// limiter (which sends none), fake req/res, 5 interleaved rounds of 400 ms, CPU µs per request.
//   node bench/headers.mjs
import { performance } from 'node:perf_hooks';
import { rateLimit } from 'resilient-rate-limit';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { FakeResponse, fakeRequest } from './lib/driver.mjs';
const quiet = { warn() {}, info() {}, error() {} };
const variants = {
  both: rateLimit({ name: 'a', limit: 1e9, window: '1h', logger: quiet }),
  standard: rateLimit({ name: 'b', limit: 1e9, window: '1h', logger: quiet, headers: 'standard' }),
  none: rateLimit({ name: 'c', limit: 1e9, window: '1h', logger: quiet, headers: false }),
};
const rlf = new RateLimiterMemory({ points: 1e9, duration: 3600 });
variants.rlf = (req, res, next) =>
  rlf.consume(req.ip).then(
    () => next(),
    () => res.status(429).end(),
  );
const ips = Array.from({ length: 1024 }, (_, i) => '10.0.' + (i >> 8) + '.' + (i & 255));
const results = {};
for (let round = 0; round < 5; round++) {
  for (const [name, mw] of Object.entries(variants)) {
    const c0 = process.cpuUsage();
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 400) {
      const ps = [];
      for (let j = 0; j < 500; j++) {
        const res = new FakeResponse();
        ps.push(
          new Promise(r => {
            const out = mw(fakeRequest(ips[n & 1023]), res, r);
            if (out && out.then) out.then(r);
            res.onEnd = r;
          }),
        );
        n++;
      }
      await Promise.all(ps);
    }
    const c = process.cpuUsage(c0);
    (results[name] ??= []).push((c.user + c.system) / n);
  }
}
for (const [k, v] of Object.entries(results)) {
  v.sort((a, b) => a - b);
  console.log(
    k.padEnd(9),
    'median µs/req',
    v[2].toFixed(2),
    'range',
    v[0].toFixed(2),
    '-',
    v[4].toFixed(2),
  );
}
for (const mw of [variants.both, variants.standard, variants.none]) await mw.limiter.close();
