// Credentials reach this package in a `redis` URL or client options, and
// ioredis copies them onto errors (`error.command.args` of a failed AUTH or
// HELLO). Everything the package logs, emits or throws passes through here
// first, so a password never leaves in a message, event or metric label.

const REDACTED = '(redacted)';

// Commands whose arguments carry credentials.
const SECRET_COMMANDS = new Set(['auth', 'hello', 'acl', 'config', 'migrate']);

// Option names whose values are credentials, in an options object that was
// passed where a client was expected.
const SECRET_FIELDS = /^(password|pass|passwd|secret|token|auth|sentinelPassword)$/i;

/** `url` with any password replaced; strings that are not URLs come back as they are. */
export function redactUrl(url: string): string {
  if (!url.includes('@')) return url;
  // "user:password@host" without a scheme parses as a URL with no password.
  if (!url.includes('//')) return url.replace(/^([^@]*?:)[^@]*@/, `$1${REDACTED}@`);
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = REDACTED;
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^/@]*?:)[^/@]*@/, `//$1${REDACTED}@`);
  }
}

/** JSON.stringify replacer that hides credential fields and URL passwords. */
export function redactingReplacer(key: string, value: unknown): unknown {
  if (key !== '' && SECRET_FIELDS.test(key) && value !== undefined && value !== null)
    return REDACTED;
  return typeof value === 'string' ? redactUrl(value) : value;
}

type CommandCarrier = { command?: { name?: unknown; args?: unknown } };

/**
 * Removes the credentials ioredis attaches to an error (`command.args` of
 * AUTH/HELLO) in place, through `cause`, `lastNodeError` and `previousErrors`
 * too, and returns the same error: listeners keep its class and fields.
 */
export function redactError<T>(error: T, depth = 0): T {
  if (typeof error !== 'object' || error === null || depth > 4) return error;
  const carrier = error as CommandCarrier & Record<string, unknown>;
  const command = carrier.command;
  if (
    command &&
    typeof command === 'object' &&
    typeof command.name === 'string' &&
    SECRET_COMMANDS.has(command.name.toLowerCase())
  ) {
    carrier.command = { name: command.name, args: [REDACTED] };
  }
  for (const field of ['cause', 'lastNodeError']) redactError(carrier[field], depth + 1);
  const previous = carrier.previousErrors;
  if (Array.isArray(previous)) for (const item of previous) redactError(item, depth + 1);
  return error;
}
