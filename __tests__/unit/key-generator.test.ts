import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { RateLimitArgumentError } from '../../lib/errors.js';
import { createIpKeyGenerator, normalizeIp } from '../../lib/key-generator.js';

function request(ip: string | undefined, remoteAddress?: string): IncomingMessage {
  const socket = new Socket();
  Object.defineProperty(socket, 'remoteAddress', { value: remoteAddress });
  const req = new IncomingMessage(socket) as IncomingMessage & { ip?: string };
  if (ip !== undefined) req.ip = ip;
  return req;
}

describe('normalizeIp', () => {
  it.each(['1.2.3.4', '203.0.113.255', '0.0.0.0', '255.255.255.255'])(
    'keeps the IPv4 address %s unchanged',
    ip => {
      expect(normalizeIp(ip, 56)).toBe(ip);
      expect(normalizeIp(ip, false)).toBe(ip);
    },
  );

  it.each(['::ffff:1.2.3.4', '::FFFF:1.2.3.4', '0:0:0:0:0:ffff:1.2.3.4', '::ffff:102:304'])(
    'keys the IPv4-mapped address %s as 1.2.3.4',
    ip => {
      expect(normalizeIp(ip, 56)).toBe('1.2.3.4');
      expect(normalizeIp(ip, false)).toBe('1.2.3.4');
    },
  );

  it('groups IPv6 clients by their /56 prefix', () => {
    const a = normalizeIp('2001:db8:abcd:12ff:1:2:3:4', 56);
    const b = normalizeIp('2001:db8:abcd:1200::9', 56);
    const c = normalizeIp('2001:db8:abcd:1300::1', 56);
    expect(a).toBe('2001:db8:abcd:1200::/56');
    expect(b).toBe(a);
    expect(c).toBe('2001:db8:abcd:1300::/56');
    expect(c).not.toBe(a);
  });

  it('groups IPv6 clients by their /64 prefix', () => {
    const a = normalizeIp('2001:db8:abcd:12ff:1:2:3:4', 64);
    expect(a).toBe('2001:db8:abcd:12ff::/64');
    expect(normalizeIp('2001:db8:abcd:12ff:ffff::', 64)).toBe(a);
    expect(normalizeIp('2001:db8:abcd:12fe::1', 64)).not.toBe(a);
  });

  it('keeps the whole address with /128', () => {
    expect(normalizeIp('2001:db8::1', 128)).toBe('2001:db8::1/128');
    expect(normalizeIp('2001:db8::2', 128)).not.toBe(normalizeIp('2001:db8::1', 128));
  });

  it('groups by /32', () => {
    expect(normalizeIp('2001:db8:ffff:1::1', 32)).toBe('2001:db8::/32');
  });

  it('keeps the whole canonical address when ipv6Subnet is false', () => {
    expect(normalizeIp('2001:0DB8:0000:0000:0000:0000:0000:0001', false)).toBe('2001:db8::1');
    expect(normalizeIp('2001:db8::2', false)).toBe('2001:db8::2');
  });

  it('gives every spelling of one IPv6 address the same key', () => {
    const spellings = [
      '2001:db8:0:0:1:0:0:1',
      '2001:DB8::1:0:0:1',
      '2001:0db8:0000:0000:0001:0000:0000:0001',
      '2001:db8::1:0:0:1',
    ];
    for (const subnet of [56, 64, 128, false] as const) {
      const keys = new Set(spellings.map(ip => normalizeIp(ip, subnet)));
      expect(keys.size).toBe(1);
    }
    // RFC 5952: the first of two equal zero runs is the one shortened.
    expect(normalizeIp(spellings[0] as string, false)).toBe('2001:db8::1:0:0:1');
  });

  it('does not shorten a single zero group', () => {
    expect(normalizeIp('2001:db8:0:1:1:1:1:1', false)).toBe('2001:db8:0:1:1:1:1:1');
  });

  it.each([
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
  ])('writes %s canonically as %s', (ip, canonical) => {
    expect(normalizeIp(ip, false)).toBe(canonical);
  });

  it('drops the zone id, so it cannot be varied to dodge the limit', () => {
    expect(normalizeIp('fe80::1%eth0', false)).toBe('fe80::1');
    expect(normalizeIp('fe80::1%eth1', 64)).toBe(normalizeIp('fe80::1', 64));
    expect(normalizeIp('fe80::1%25', 56)).toBe('fe80::/56');
  });

  it('returns text that is not an IP address as is', () => {
    expect(normalizeIp('unix:/tmp/socket', 56)).toBe('unix:/tmp/socket');
  });
});

describe('createIpKeyGenerator', () => {
  it('uses req.ip when present', () => {
    const key = createIpKeyGenerator(56);
    expect(key(request('203.0.113.7', '10.0.0.1'))).toBe('203.0.113.7');
  });

  it('uses req.socket.remoteAddress when req.ip is absent', () => {
    const key = createIpKeyGenerator(56);
    expect(key(request(undefined, '10.0.0.1'))).toBe('10.0.0.1');
    expect(key(request(undefined, '::ffff:10.0.0.2'))).toBe('10.0.0.2');
  });

  it('groups IPv6 addresses by the subnet it was built with', () => {
    expect(createIpKeyGenerator(56)(request('2001:db8:abcd:12ff::1'))).toBe(
      '2001:db8:abcd:1200::/56',
    );
    expect(createIpKeyGenerator(64)(request('2001:db8:abcd:12ff::1'))).toBe(
      '2001:db8:abcd:12ff::/64',
    );
    expect(createIpKeyGenerator(false)(request('2001:db8:abcd:12ff::1'))).toBe(
      '2001:db8:abcd:12ff::1',
    );
  });

  it('throws RateLimitArgumentError for a request without an address', () => {
    const key = createIpKeyGenerator(56);
    expect(() => key(request(undefined, undefined))).toThrow(RateLimitArgumentError);
    expect(() => key(request(undefined, ''))).toThrow(/pass a `key` function/);
    const bare = { headers: {} } as unknown as IncomingMessage;
    expect(() => key(bare)).toThrow(RateLimitArgumentError);
  });
});

describe('normalizeIp with a port appended by a proxy', () => {
  it.each([
    ['203.0.113.7:50000', '203.0.113.7'],
    ['203.0.113.7:1', '203.0.113.7'],
    ['[2001:db8::1]:443', '2001:db8::/56'],
    ['[2001:db8::1]', '2001:db8::/56'],
    ['[::ffff:1.2.3.4]:80', '1.2.3.4'],
  ])('keys %s as %s', (ip, key) => {
    expect(normalizeIp(ip, 56)).toBe(key);
  });

  it.each(['999.1.1.1:80', 'host.example:80', '[not-an-ip]:80', '2001:db8::1:443x'])(
    'leaves %s, which holds no address, as it is',
    ip => {
      expect(normalizeIp(ip, 56)).toBe(ip);
    },
  );

  it('reports a value without an address to onNotIp, and an address with a port not', () => {
    const heard: string[] = [];
    const keyOf = createIpKeyGenerator(56, value => heard.push(value));
    expect(keyOf(request('203.0.113.7:50000'))).toBe('203.0.113.7');
    expect(keyOf(request('2001:db8::1'))).toBe('2001:db8::/56');
    expect(keyOf(request('unknown'))).toBe('unknown');
    expect(heard).toEqual(['unknown']);
  });
});
