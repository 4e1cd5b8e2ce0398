import { isIPv4, isIPv6 } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { RateLimitArgumentError } from './errors.js';

type RequestWithIp = IncomingMessage & { ip?: string };

/**
 * The default key: the client address. `req.ip` under Express (so the app's
 * `trust proxy` setting decides), else the socket's address. IPv6 clients are
 * grouped by their /`ipv6Subnet` prefix, since one client usually holds a
 * whole /64 or /56 and could otherwise rotate addresses to dodge the limit.
 * `onNotIp` hears of a value that is no IP address even without a port: it
 * is used as is, so every such value gets its own limit.
 * @throws RateLimitArgumentError when the request has no address at all.
 */
export function createIpKeyGenerator(
  ipv6Subnet: number | false,
  onNotIp?: (value: string) => void,
): (req: IncomingMessage) => string {
  return req => {
    const ip = (req as RequestWithIp).ip ?? req.socket?.remoteAddress;
    if (typeof ip !== 'string' || ip === '') {
      throw new RateLimitArgumentError(
        'the request has no client address (req.ip and req.socket.remoteAddress are empty); pass a `key` function',
      );
    }
    if (isIPv4(ip)) return ip; // the common case: no further parsing
    const key = normalizeIp(ip, ipv6Subnet);
    // Unchanged and no IPv6 address: no address was found in it.
    if (onNotIp !== undefined && key === ip && !isIPv6(withoutZone(ip))) onNotIp(ip);
    return key;
  };
}

/**
 * The key for a client address: IPv4 as is, IPv4-mapped IPv6 as IPv4, other
 * IPv6 masked to its /`ipv6Subnet` prefix (default 56); a port a proxy
 * appended (`203.0.113.7:50000`, `[2001:db8::1]:443`) is dropped. For custom `key`
 * functions that fall back to the address: `key: req => req.user?.id ?? ipKey(req.ip)`.
 */
export function ipKey(ip: string, ipv6Subnet: number | false = 56): string {
  return normalizeIp(ip, ipv6Subnet);
}

export function normalizeIp(raw: string, ipv6Subnet: number | false): string {
  if (isIPv4(raw)) return raw;
  const ip = withoutPort(raw);
  if (isIPv4(ip)) return ip;
  // The common case on dual-stack servers: IPv4 clients appear IPv4-mapped.
  if (ip.startsWith('::ffff:') && isIPv4(ip.slice(7))) return ip.slice(7);
  const bare = withoutZone(ip);
  if (!isIPv6(bare)) return ip;
  const groups = expandIPv6(bare);
  // IPv4-mapped (::ffff:a.b.c.d) is an IPv4 client: key it as one.
  if (groups.slice(0, 5).every(g => g === 0) && groups[5] === 0xffff) {
    const hi = groups[6] as number;
    const lo = groups[7] as number;
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  if (ipv6Subnet === false) return compress(groups);
  let bits = ipv6Subnet;
  const masked = groups.map(group => {
    const keep = Math.max(0, Math.min(16, bits));
    bits -= 16;
    return keep === 0 ? 0 : group & (0xffff << (16 - keep)) & 0xffff;
  });
  return `${compress(masked)}/${ipv6Subnet}`;
}

// Some proxies (Azure Application Gateway among them) append the client's
// source port to X-Forwarded-For, so `req.ip` reads "203.0.113.7:50000" or
// "[2001:db8::1]:50000". Keyed as is, every source port would get its own
// quota; only the address identifies the client.
const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;
const BRACKETED_IPV6 = /^\[([^\]]+)\](?::\d{1,5})?$/;

function withoutPort(ip: string): string {
  const v4 = IPV4_WITH_PORT.exec(ip);
  if (v4 !== null && isIPv4(v4[1] as string)) return v4[1] as string;
  const v6 = BRACKETED_IPV6.exec(ip);
  if (v6 !== null && isIPv6(withoutZone(v6[1] as string))) return v6[1] as string;
  return ip;
}

function withoutZone(ip: string): string {
  const zone = ip.indexOf('%');
  return zone === -1 ? ip : ip.slice(0, zone);
}

function expandIPv6(ip: string): number[] {
  let text = ip;
  // Embedded IPv4 tail: turn "a.b.c.d" into two hex groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const fill = rest === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(fill).fill('0'), ...right].map(g => parseInt(g, 16));
}

// Canonical text form (RFC 5952): lower case, longest zero run as "::".
function compress(groups: number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map(g => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLength).join(':');
  return `${left}::${right}`;
}
