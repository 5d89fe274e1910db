/**
 * The project's environment switches (`BERT_BACKEND`, `BERT_NO_SIMD`, `BERT_POOL_MB`, `HF_HUB_OFFLINE`, ...) are
 * optional: a process that may not read the environment (run without `--allow-env`, or with an `--allow-env=LIST`
 * that does not name the variable) treats them as unset instead of failing.
 * @module
 */

/**
 * The value of environment variable `name`, or undefined when it is unset, empty, or not readable for lack of
 * `--allow-env`.
 *
 * @example envVar("BERT_BACKEND") // "blas", or undefined
 */
export function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) return undefined;
    throw err;
  }
}
