import { connect } from 'node:net';

/** A parsed RESP2 reply. Errors are not values: they reject the promise. */
export type RespReply = string | number | null | RespReply[];

export class RespReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RespReplyError';
  }
}

export interface RawCommandOptions {
  host?: string;
  /** Covers connect + reply; a frozen (SIGSTOPped) server accepts TCP but never answers. */
  timeoutMs?: number;
}

function encode(args: readonly string[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.from(arg, 'utf8');
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

interface Parsed {
  value: RespReply;
  error?: string;
  next: number;
}

/** Returns undefined while the buffer does not yet hold one complete reply. */
function parse(buf: Buffer, offset: number): Parsed | undefined {
  const lineEnd = buf.indexOf('\r\n', offset);
  if (lineEnd === -1) return undefined;
  const type = String.fromCharCode(buf[offset] ?? 0);
  const line = buf.toString('utf8', offset + 1, lineEnd);
  const afterLine = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, next: afterLine };
    case '-':
      return { value: null, error: line, next: afterLine };
    case ':':
      return { value: Number(line), next: afterLine };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, next: afterLine };
      if (buf.length < afterLine + len + 2) return undefined;
      return { value: buf.toString('utf8', afterLine, afterLine + len), next: afterLine + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next: afterLine };
      const items: RespReply[] = [];
      let pos = afterLine;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, pos);
        if (item === undefined) return undefined;
        // Nested errors (e.g. inside EXEC) are kept as text rather than failing the whole reply.
        items.push(item.error !== undefined ? `ERR:${item.error}` : item.value);
        pos = item.next;
      }
      return { value: items, next: pos };
    }
    default:
      throw new Error(`unsupported RESP type byte ${JSON.stringify(type)}`);
  }
}

/**
 * Sends one command on a fresh connection and resolves with the parsed reply.
 * Deliberately independent of ioredis so helpers keep working while the
 * client under test is in a broken state.
 */
export function rawCommand(
  port: number,
  args: readonly string[],
  options: RawCommandOptions = {},
): Promise<RespReply> {
  const host = options.host ?? '127.0.0.1';
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise<RespReply>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    const socket = connect({ host, port });
    const finish = (err: Error | undefined, value?: RespReply): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value ?? null);
    };
    const timer = setTimeout(
      () =>
        finish(new Error(`${args[0] ?? ''} to ${host}:${port} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('error', err => finish(err));
    socket.on('close', () =>
      finish(new Error(`connection to ${host}:${port} closed before reply`)),
    );
    socket.on('data', chunk => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      let parsed: Parsed | undefined;
      try {
        parsed = parse(buf, 0);
      } catch (err) {
        finish(err as Error);
        return;
      }
      if (parsed === undefined) return;
      if (parsed.error !== undefined) finish(new RespReplyError(parsed.error));
      else finish(undefined, parsed.value);
    });
    socket.write(encode(args));
  });
}

/** Nested replies are joined with newlines so callers can grep them like INFO text. */
export function replyToText(reply: RespReply): string {
  if (reply === null) return '';
  if (Array.isArray(reply)) return reply.map(replyToText).join('\n');
  return String(reply);
}
