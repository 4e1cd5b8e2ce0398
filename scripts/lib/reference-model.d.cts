// Types of reference-model.cjs (plain CommonJS, shared by jest and the .mjs scripts).

type AlgorithmName = 'fixed-window' | 'sliding-window' | 'token-bucket';

/** Answers "would `cost` units be admitted at `now`?" and records admissions. */
export interface ReferenceModel {
  /** `limit`: a per-call limit (fixed and sliding windows); default the rule's. */
  allows(cost: number, now: number, limit?: number): boolean;
  admit(cost: number, now: number): void;
  /** Gives back `units` counted in the live window or bucket, never below zero. */
  refund(units: number, now: number): void;
}

/**
 * A model of `algorithm` built from SPEC.md's definitions, not from lib/.
 * `slack` raises the limit it admits up to (never the token bucket's refill rate).
 */
export function referenceModel(
  algorithm: AlgorithmName,
  limit: number,
  windowMs: number,
  slack?: number,
): ReferenceModel;

/** The largest cost (0..limit) the model would admit at `now`. */
export function admissible(model: ReferenceModel, limit: number, now: number): number;

export type Admitted = { at: number; cost: number };

/** The first violation of the algorithm's bound over a history sorted by `at`, or undefined. */
export function boundViolation(
  algorithm: AlgorithmName,
  limit: number,
  windowMs: number,
  admitted: readonly Admitted[],
): string | undefined;
