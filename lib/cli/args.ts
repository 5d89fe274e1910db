/**
 * A small command-line flag parser (Deno's `@std/cli` lives on JSR, which this project does not use).
 *
 * Flags are `--name value`, `--name=value` or boolean `--name` / `--no-name`; everything else is positional.
 * Names are declared up front so that a typo is an error, not a silently ignored flag.
 * @module
 */

/** Declaration of one flag. */
export interface FlagSpec {
  /** `string` (default), `number`, `boolean` or `list` (comma-separated, repeatable). */
  type?: "string" | "number" | "boolean" | "list";
  /** Value when the flag is absent. */
  default?: string | number | boolean | string[];
  /** One line for `--help`. */
  help: string;
  /** Required flags make parsing fail with a clear message when absent. */
  required?: boolean;
  /** `number` flags: the value must be a whole number. */
  integer?: boolean;
  /** `number` flags: smallest allowed value (inclusive). */
  min?: number;
  /** `number` flags: largest allowed value (inclusive). */
  max?: number;
  /** `number` flags: the value must be > 0. */
  positive?: boolean;
}

/** The constraint of a number flag in words (`an integer >= 1`), or undefined when it has none. */
function numberRule(f: FlagSpec): string | undefined {
  const parts: string[] = [];
  if (f.positive) parts.push("> 0");
  if (f.min !== undefined) parts.push(`>= ${f.min}`);
  if (f.max !== undefined) parts.push(`<= ${f.max}`);
  if (!f.integer && !parts.length) return undefined;
  return `${f.integer ? "an integer" : "a number"}${parts.length ? " " + parts.join(" and ") : ""}`;
}

/** Throws a {@linkcode UsageError} naming `--name` when `value` breaks the flag's number constraints. */
export function checkNumberFlag(name: string, value: number, f: FlagSpec): void {
  const ok = (!f.integer || Number.isInteger(value)) && (!f.positive || value > 0) &&
    (f.min === undefined || value >= f.min) && (f.max === undefined || value <= f.max);
  if (!ok) throw new UsageError(`--${name} must be ${numberRule(f)}, got ${value}`);
}

/** A command's declaration: its flags and its help text. */
export interface CommandSpec {
  /** e.g. `tokenize`. */
  name: string;
  /** One-paragraph description shown by `--help`. */
  description: string;
  /** Usage line after `deno task bert <name>`, e.g. `--vocab FILE --input IN.jsonl --output OUT.jsonl`. */
  usage?: string;
  /** Flags by name (without the leading dashes). */
  flags: Record<string, FlagSpec>;
}

/** Parsed flags (by name) and positional arguments. */
export interface ParsedArgs {
  flags: Record<string, string | number | boolean | string[] | undefined>;
  positional: string[];
  /** True when `--help` or `-h` was given. */
  help: boolean;
}

/** Error raised for bad command-line input; the CLI prints its message and the usage line. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Renders `--help` text for a command. */
export function helpText(spec: CommandSpec): string {
  const lines = [
    `Usage: deno task bert ${spec.name}${spec.usage ? " " + spec.usage : " [flags]"}`,
    "",
    spec.description,
    "",
  ];
  const names = Object.keys(spec.flags);
  if (names.length) lines.push("Flags:");
  const width = Math.max(...names.map((n) => n.length), 4) + 4;
  for (const name of names) {
    const f = spec.flags[name];
    const def = f.default === undefined || f.default === false
      ? ""
      : ` (default: ${Array.isArray(f.default) ? f.default.join(",") : f.default})`;
    lines.push(`  --${name.padEnd(width)}${f.help}${f.required ? " (required)" : def}`);
  }
  lines.push(`  --${"help".padEnd(width)}Show this help`);
  return lines.join("\n");
}

/** Parses `argv` against `spec`. Throws {@linkcode UsageError} on unknown flags, bad numbers, missing values. */
export function parseArgs(argv: string[], spec: CommandSpec): ParsedArgs {
  const flags: ParsedArgs["flags"] = {};
  const positional: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    if (arg === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("--")) {
      positional.push(arg);
      continue;
    }
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    let negated = false;
    if (!(name in spec.flags) && name.startsWith("no-") && spec.flags[name.slice(3)]?.type === "boolean") {
      name = name.slice(3);
      negated = true;
    }
    const f = spec.flags[name];
    if (!f) {
      throw new UsageError(`unknown flag --${name} for "${spec.name}" (see deno task bert ${spec.name} --help)`);
    }
    const type = f.type ?? "string";
    if (type === "boolean") {
      if (value === undefined) flags[name] = !negated;
      else if (value === "true" || value === "1") flags[name] = true;
      else if (value === "false" || value === "0") flags[name] = false;
      else throw new UsageError(`--${name} expects true or false, got "${value}"`);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
      value = argv[++i];
    }
    if (type === "number") {
      const n = Number(value);
      if (value.trim() === "" || !Number.isFinite(n)) {
        throw new UsageError(`--${name} expects a number, got "${value}"`);
      }
      checkNumberFlag(name, n, f);
      flags[name] = n;
    } else if (type === "list") {
      const prev = (flags[name] as string[] | undefined) ?? [];
      flags[name] = [...prev, ...value.split(",").map((s) => s.trim()).filter((s) => s.length > 0)];
    } else {
      flags[name] = value;
    }
  }
  for (const [name, f] of Object.entries(spec.flags)) {
    if (flags[name] === undefined) {
      if (f.required && !help) throw new UsageError(`--${name} is required for "${spec.name}"`);
      if (f.default !== undefined) flags[name] = f.default;
    }
  }
  return { flags, positional, help };
}
