/**
 * Shape checks for parsed JSON.
 * @module
 */

/** Whether `x` is a JSON object (not null, not an array): its fields can then be read by name. */
export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}
