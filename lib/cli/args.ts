/**
 * A small command-line flag parser (Deno's `@std/cli` lives on JSR, which this project does not use).
 *
 * Flags are `--name value`, `--name=value` or boolean `--name` / `--no-name`; everything else is positional.
 * Names are declared up front so that a typo is an error, not a silently ignored flag, and the parsed values are
 * typed from the declaration: declare a command with {@linkcode defineCommand} and `parseArgs(argv, spec).flags`
 * has a `number` for a `type: "number"` flag, `string[]` for a `list`, and `| undefined` unless it is required or
 * has a default.
 * @module
 */
import { UsageError } from "../io/errors.ts";

/** The kinds of flag value: `--name text`, `--name 3`, `--name` / `--no-name`, `--name a,b --name c`. */
export type FlagKind = "string" | "number" | "boolean" | "list";

/** Declaration of one flag. */
export interface FlagSpec {
  /** `string` (default), `number`, `boolean` or `list` (comma-separated, repeatable). */
  type?: FlagKind;
  /** Value when the flag is absent. */
  default?: string | number | boolean | readonly string[];
  /** Other spellings accepted for the flag (`--warmup-ratio` for `--warmup`); `--help` lists them. */
  aliases?: readonly string[];
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

/** Declares a command, keeping the literal kinds of its flags so that {@linkcode parseArgs} types their values. */
export function defineCommand<const S extends CommandSpec>(spec: S): S {
  return spec;
}

/** The value of a flag declared as `F`: `number`, `boolean`, `string[]` (list) or `string`. */
export type FlagValue<F extends FlagSpec> = F extends { type?: infer K } ? KindValue<K> : string;
type KindValue<K> = K extends "number" ? number : K extends "boolean" ? boolean : K extends "list" ? string[] : string;

/** The parsed values of the flags `Flags`: always there when required or defaulted, else possibly `undefined`. */
export type FlagValues<Flags extends Record<string, FlagSpec>> = {
  -readonly [K in keyof Flags]: Flags[K] extends
    { required: true } | { default: string | number | boolean | readonly string[] } ? FlagValue<Flags[K]>
    : FlagValue<Flags[K]> | undefined;
};

/** Parsed flags (by name, typed from the declaration) and positional arguments. */
export interface ParsedArgs<Flags extends Record<string, FlagSpec> = Record<string, FlagSpec>> {
  flags: FlagValues<Flags>;
  positional: string[];
  /** True when `--help` or `-h` was given. */
  help: boolean;
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
    const also = f.aliases?.length ? ` (also ${f.aliases.map((a) => `--${a}`).join(", ")})` : "";
    lines.push(`  --${name.padEnd(width)}${f.help}${also}${f.required ? " (required)" : def}`);
  }
  lines.push(`  --${"help".padEnd(width)}Show this help`);
  return lines.join("\n");
}

/** Parses `argv` against `spec`. Throws {@linkcode UsageError} on unknown flags, bad numbers, missing values. */
export function parseArgs<const S extends CommandSpec>(argv: string[], spec: S): ParsedArgs<S["flags"]> {
  const flags: Record<string, string | number | boolean | readonly string[] | undefined> = {};
  const canonical = new Map<string, string>();
  for (const [name, f] of Object.entries(spec.flags)) for (const alias of f.aliases ?? []) canonical.set(alias, name);
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
    // `key`: the declared name (an alias maps to it); `name` stays as typed, for the messages.
    let key = canonical.get(name) ?? name;
    if (!(key in spec.flags) && name.startsWith("no-")) {
      const positive = canonical.get(name.slice(3)) ?? name.slice(3);
      if (spec.flags[positive]?.type === "boolean") {
        key = positive;
        name = name.slice(3);
        negated = true;
      }
    }
    const f = spec.flags[key];
    if (!f) {
      throw new UsageError(`unknown flag --${name} for "${spec.name}" (see deno task bert ${spec.name} --help)`);
    }
    const type = f.type ?? "string";
    if (type === "boolean") {
      if (value === undefined) flags[key] = !negated;
      else if (value === "true" || value === "1") flags[key] = true;
      else if (value === "false" || value === "0") flags[key] = false;
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
      flags[key] = n;
    } else if (type === "list") {
      const prev = (flags[key] as string[] | undefined) ?? [];
      flags[key] = [...prev, ...value.split(",").map((s) => s.trim()).filter((s) => s.length > 0)];
    } else {
      flags[key] = value;
    }
  }
  for (const [name, f] of Object.entries(spec.flags)) {
    if (flags[name] === undefined) {
      if (f.required && !help) throw new UsageError(`--${name} is required for "${spec.name}"`);
      if (f.default !== undefined) flags[name] = Array.isArray(f.default) ? [...f.default] : f.default;
    }
  }
  return { flags: flags as FlagValues<S["flags"]>, positional, help };
}
