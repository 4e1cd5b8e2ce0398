import { IncomingMessage, ServerResponse, type OutgoingHttpHeader } from 'node:http';
import { Socket } from 'node:net';
import {
  policyItem,
  setLegacyHeaders,
  setRetryAfterHeader,
  setSourceHeader,
  setStandardHeaders,
} from '../../lib/headers.js';
import type { RateLimitResult } from '../../lib/types.js';

const NOW = 1_700_000_000_000;

function result(overrides: Partial<RateLimitResult> = {}): RateLimitResult {
  return {
    allowed: true,
    limit: 100,
    remaining: 42,
    resetAt: NOW + 30_000,
    retryAfterMs: 0,
    source: 'redis',
    key: '203.0.113.7',
    ...overrides,
  };
}

function realResponse(): ServerResponse {
  return new ServerResponse(new IncomingMessage(new Socket()));
}

/** Records setHeader calls; `headersSent` can be flipped. */
class RecordingResponse {
  headersSent = false;
  readonly headers = new Map<string, OutgoingHttpHeader>();
  readonly calls: string[] = [];
  setHeader(name: string, value: OutgoingHttpHeader): this {
    this.calls.push(name);
    this.headers.set(name.toLowerCase(), value);
    return this;
  }
  getHeader(name: string): OutgoingHttpHeader | undefined {
    return this.headers.get(name.toLowerCase());
  }
  asResponse(): ServerResponse {
    return this as unknown as ServerResponse;
  }
}

describe('policyItem', () => {
  it('formats a draft-10 RateLimit-Policy item with the window in seconds', () => {
    expect(policyItem('api', 100, 60_000)).toBe('"api";q=100;w=60');
    expect(policyItem('login', 5, 900_000)).toBe('"login";q=5;w=900');
  });

  it('rounds a partial-second window up, to at least 1 s', () => {
    expect(policyItem('fast', 10, 1_500)).toBe('"fast";q=10;w=2');
    expect(policyItem('fast', 10, 500)).toBe('"fast";q=10;w=1');
    expect(policyItem('fast', 10, 1)).toBe('"fast";q=10;w=1');
  });
});

describe('setStandardHeaders', () => {
  it('sets RateLimit-Policy and RateLimit with remaining and seconds to reset', () => {
    const res = realResponse();
    setStandardHeaders(res, 'api', policyItem('api', 100, 60_000), result(), NOW);
    expect(res.getHeader('RateLimit-Policy')).toBe('"api";q=100;w=60');
    expect(res.getHeader('RateLimit')).toBe('"api";r=42;t=30');
  });

  it('appends to the items earlier limiters set on the same response', () => {
    const res = realResponse();
    setStandardHeaders(
      res,
      'burst',
      policyItem('burst', 10, 1_000),
      result({ remaining: 9, resetAt: NOW + 1_000 }),
      NOW,
    );
    setStandardHeaders(
      res,
      'daily',
      policyItem('daily', 1_000, 86_400_000),
      result({ remaining: 500, resetAt: NOW + 3_600_000 }),
      NOW,
    );
    expect(res.getHeader('RateLimit-Policy')).toBe('"burst";q=10;w=1, "daily";q=1000;w=86400');
    expect(res.getHeader('RateLimit')).toBe('"burst";r=9;t=1, "daily";r=500;t=3600');
  });

  it('appends to a value the application set itself', () => {
    const res = new RecordingResponse();
    res.setHeader('RateLimit-Policy', '"app";q=1;w=1');
    res.setHeader('RateLimit', '"app";r=0;t=1');
    setStandardHeaders(res.asResponse(), 'api', policyItem('api', 100, 60_000), result(), NOW);
    expect(res.getHeader('RateLimit-Policy')).toBe('"app";q=1;w=1, "api";q=100;w=60');
    expect(res.getHeader('RateLimit')).toBe('"app";r=0;t=1, "api";r=42;t=30');
  });

  it('rounds the reset up to whole seconds and never below 0', () => {
    const res = realResponse();
    setStandardHeaders(res, 'a', '"a";q=1;w=1', result({ resetAt: NOW + 1_001 }), NOW);
    expect(res.getHeader('RateLimit')).toBe('"a";r=42;t=2');
    const late = realResponse();
    setStandardHeaders(late, 'a', '"a";q=1;w=1', result({ resetAt: NOW - 5_000 }), NOW);
    expect(late.getHeader('RateLimit')).toBe('"a";r=42;t=0');
  });

  it('sets nothing once headers are sent', () => {
    const res = new RecordingResponse();
    res.headersSent = true;
    setStandardHeaders(res.asResponse(), 'api', '"api";q=1;w=1', result(), NOW);
    expect(res.calls).toEqual([]);
  });
});

describe('setLegacyHeaders', () => {
  it('sets limit, remaining and the reset in Unix epoch seconds', () => {
    const res = realResponse();
    setLegacyHeaders(res, result({ resetAt: 1_700_000_030_000 }));
    expect(res.getHeader('X-RateLimit-Limit')).toBe('100');
    expect(res.getHeader('X-RateLimit-Remaining')).toBe('42');
    expect(res.getHeader('X-RateLimit-Reset')).toBe('1700000030');
  });

  it('rounds a reset inside a second up to the next epoch second', () => {
    const res = realResponse();
    setLegacyHeaders(res, result({ resetAt: 1_700_000_030_001 }));
    expect(res.getHeader('X-RateLimit-Reset')).toBe('1700000031');
  });

  it('sets nothing once headers are sent', () => {
    const res = new RecordingResponse();
    res.headersSent = true;
    setLegacyHeaders(res.asResponse(), result());
    expect(res.calls).toEqual([]);
  });
});

describe('setSourceHeader', () => {
  it.each(['redis', 'memory', 'bypass'] as const)('sets X-RateLimit-Source: %s', source => {
    const res = realResponse();
    setSourceHeader(res, source);
    expect(res.getHeader('X-RateLimit-Source')).toBe(source);
  });

  it('sets nothing once headers are sent', () => {
    const res = new RecordingResponse();
    res.headersSent = true;
    setSourceHeader(res.asResponse(), 'memory');
    expect(res.calls).toEqual([]);
  });
});

describe('setRetryAfterHeader', () => {
  it.each([
    [30_000, '30'],
    [1_001, '2'],
    [1_000, '1'],
    [999, '1'],
    [1, '1'],
    [0, '1'],
    [-50, '1'],
  ])('turns %p ms into Retry-After: %s', (ms, header) => {
    const res = realResponse();
    setRetryAfterHeader(res, ms);
    expect(res.getHeader('Retry-After')).toBe(header);
  });

  it('sets nothing once headers are sent', () => {
    const res = new RecordingResponse();
    res.headersSent = true;
    setRetryAfterHeader(res.asResponse(), 5_000);
    expect(res.calls).toEqual([]);
  });

  it('leaves a real response alone after it has been flushed', () => {
    const res = realResponse();
    res.writeHead(200);
    expect(res.headersSent).toBe(true);
    expect(() => setRetryAfterHeader(res, 5_000)).not.toThrow();
    expect(res.getHeader('Retry-After')).toBeUndefined();
  });
});
