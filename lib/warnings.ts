import type { Logger } from './types.js';

/**
 * Codes of the one-time warnings about likely mistakes. Each has a section
 * under README "Error codes"; the code leads the message so logs can be
 * searched and alerted on.
 */
export type WarningCode =
  | 'ERR_RRL_DOUBLE_COUNT'
  | 'ERR_RRL_NAME_CONFLICT'
  | 'ERR_RRL_KEY_NOT_IP'
  | 'ERR_RRL_WINDOW_SECONDS'
  | 'ERR_RRL_MEMORY_ONLY'
  | 'ERR_RRL_LIMITER_PER_REQUEST';

/** `'resilient-rate-limit: [CODE] message'`, the form every coded log line takes. */
export function codedMessage(code: WarningCode, message: string): string {
  return `resilient-rate-limit: [${code}] ${message}`;
}

/** Logs a coded warning through `logger.warn`. A throwing logger is ignored. */
export function warnWithCode(logger: Logger, code: WarningCode, message: string): void {
  try {
    logger.warn(codedMessage(code, message));
  } catch {
    // A logger must not change what the limiter does.
  }
}

/** Logs a coded notice through `logger.info`. A throwing logger is ignored. */
export function infoWithCode(logger: Logger, code: WarningCode, message: string): void {
  try {
    logger.info(codedMessage(code, message));
  } catch {
    // As above.
  }
}
