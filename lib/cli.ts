/**
 * `deno task bert <command> [flags]`: the headless entry point. Each command lives in `lib/cli/<command>.ts`
 * and exports `spec` (its flags and help) and `run(args)`. Commands are loaded lazily so that `tokenize`
 * never pays for starting TensorFlow.js.
 * @module
 */
import { type CommandSpec, helpText, parseArgs, type ParsedArgs } from "./cli/args.ts";
import { UsageError } from "./io/errors.ts";
import { exitProcess } from "./backends/exit.ts";

/** The interface every `lib/cli/<command>.ts` module implements. */
export interface CommandModule {
  spec: CommandSpec;
  run(args: ParsedArgs): Promise<void>;
}

/** Commands in the order `--help` lists them, with a one-line summary. */
export const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  main: {
    summary: "the embedded default end to end: prepare -> train -> evaluate into outputs/default",
    load: () => import("./cli/main.ts"),
  },
  tokenize: { summary: "WordPiece-tokenize a JSONL file of texts", load: () => import("./cli/tokenize.ts") },
  prepare: {
    summary: "read a dataset and write features (safetensors) to outputs/<run>/features",
    load: () => import("./cli/prepare.ts"),
  },
  train: { summary: "fine-tune a checkpoint on prepared features", load: () => import("./cli/train.ts") },
  evaluate: { summary: "evaluate a saved checkpoint (metrics, predictions)", load: () => import("./cli/evaluate.ts") },
  predict: { summary: "predict labels for unlabelled texts", load: () => import("./cli/predict.ts") },
  "extract-features": {
    summary: "write hidden states and pooled outputs for texts (like Google's extract_features.py)",
    load: () => import("./cli/extract_features.ts"),
  },
  download: {
    summary: "fetch a checkpoint from the Hugging Face hub into the cache",
    load: () => import("./cli/download.ts"),
  },
  inspect: {
    summary: "list the tensors of a weights file or folder (safetensors, .bin, TensorFlow checkpoint)",
    load: () => import("./cli/inspect.ts"),
  },
  convert: {
    summary: "rewrite a .bin or TensorFlow checkpoint folder as a Hugging Face safetensors folder",
    load: () => import("./cli/convert.ts"),
  },
  "build-vocab": {
    summary: "learn a WordPiece vocabulary from a text corpus",
    load: () => import("./cli/build_vocab.ts"),
  },
  pretrain: {
    summary: "pre-train BERT (masked LM + next sentence) on a text corpus or IMDB reviews",
    load: () => import("./cli/pretrain.ts"),
  },
  squad: {
    summary: "SQuAD v1.1 question answering: squad prepare|train|predict|evaluate",
    load: () => import("./cli/squad.ts"),
  },
  bench: { summary: "training, inference and tokenizer throughput benchmarks", load: () => import("./cli/bench.ts") },
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 2;
  return [
    "Usage: deno task bert <command> [flags]   (deno task bert <command> --help for its flags)",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`),
  ].join("\n");
}

/** Runs the CLI on `argv` (without the program name); returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(mainHelp());
    return name ? 0 : 1;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    console.error(`unknown command "${name}"\n\n${mainHelp()}`);
    return 2;
  }
  // Network is granted to the task for the hub only (`download`, and `main`, which fetches BERT-Tiny when it
  // can); every other command gives it up before it starts.
  if (name !== "download" && name !== "main") await Deno.permissions.revoke({ name: "net" });
  const mod = await entry.load();
  try {
    const args = parseArgs(rest, mod.spec);
    if (args.help) {
      console.log(helpText(mod.spec));
      return 0;
    }
    await mod.run(args);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`error: ${err.message}\n\n${helpText(mod.spec)}`);
      return 2;
    }
    if (err instanceof Error && err.name === "TrainingInterrupted") {
      console.error(err.message); // the checkpoint is saved; the message says how to resume
      return (err as Error & { exitCode?: number }).exitCode ?? 130;
    }
    const message = err instanceof Error ? err.message : String(err);
    const permission = permissionAdvice(message, name, rest);
    console.error(`error: ${permission ? permission.message : message}`);
    if (permission) console.error(permission.advice);
    if (Deno.env.get("BERT_DEBUG") && err instanceof Error) console.error(err.stack);
    return 1;
  }
}

/**
 * Deno's permission errors end with "run again with the --allow-read flag", which does not work under
 * `deno task bert` (the task fixes the flags). Say what does: where the data may live, or the `deno run` form.
 */
export function permissionAdvice(
  message: string,
  command: string,
  args: string[],
): { message: string; advice: string } | undefined {
  const m = /Requires (read|write|net|env|run|ffi|sys) access to "?([^",]*)"?/.exec(message);
  if (!m) return undefined;
  const [, kind, target] = m;
  const cleaned = message.replace(/,? run again with the --allow-[a-z]+ flag/, "");
  const where = target.startsWith("/") ? target.replace(/\/[^/]*$/, "") || "/" : target;
  const rerun = (flag: string) =>
    `  npx deno run ${flag} --allow-env --allow-ffi --allow-sys lib/cli.ts ${command} ${args.join(" ")}`.trimEnd();
  if (kind === "read") {
    return {
      message: cleaned,
      advice: `\`deno task bert\` may read only this project folder and ../shared. Put the data under data/ ` +
        `(e.g. cp ${target} data/) and pass that path, or run Deno yourself with read access to ${where}:\n` +
        rerun(`--allow-read=.,../shared,${where} --allow-write=outputs,.cache`),
    };
  }
  if (kind === "write") {
    return {
      message: cleaned,
      advice: `\`deno task bert\` may write only under outputs/ and .cache/. Choose an output path under outputs/, ` +
        `or run Deno yourself with write access to ${where}:\n` +
        rerun(`--allow-read=.,../shared --allow-write=outputs,.cache,${where}`),
    };
  }
  return {
    message: cleaned,
    advice: `this command has no ${kind} permission under \`deno task bert\` (see the README's Permissions section)`,
  };
}

if (import.meta.main) exitProcess(await main(Deno.args));
