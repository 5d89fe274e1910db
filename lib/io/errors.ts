/**
 * The error every layer raises for a request that cannot work as asked (conflicting or missing options, a name
 * that is neither a size nor a file): the CLI prints its message with the command's `--help` and exits with 2.
 * It lives at the bottom so that library code checking its options needs no import from lib/cli/.
 * @module
 */

/** Bad input from the caller (a flag, an option); the CLI prints its message and the usage text. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
