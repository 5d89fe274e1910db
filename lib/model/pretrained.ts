/**
 * Which pre-trained BERT a fine-tuning run starts from, for the main job and the notebooks:
 *
 * 1. a folder the user names (`--model DIR`, the notebook's `MODEL_DIR`);
 * 2. Google's BERT-Tiny ({@linkcode DEFAULT_MODEL_ID}) from the hub cache, or downloaded when the network is
 *    allowed (`download: true`);
 * 3. offline, the model shipped in the repository, `data/pretrained/`: a BERT-Tiny-shaped encoder pre-trained on
 *    this project's machines on the IMDB train reviews (its `README.md` is the model card: corpus, recipe, held-out
 *    figures and how it fine-tunes against random weights);
 * 4. nothing: random weights, with a loud notice.
 *
 * {@linkcode chooseStartingModel} returns the folder and a sentence saying which was used and what that means.
 * @module
 */
import { downloadModel, offlineFromEnv } from "../io/hub.ts";
import { exists, join, projectRoot, relativeToCwd } from "../io/fsutil.ts";

/** The hub model the main job and notebooks prefer: Google's BERT-Tiny (2 layers, hidden 128), uncased. */
export const DEFAULT_MODEL_ID = "google/bert_uncased_L-2_H-128_A-2";

/** `data/pretrained/` of this checkout (absolute when the project root is known). */
export function shippedModelDir(): string {
  return join(projectRoot(), "data", "pretrained");
}

/** Where a run's starting weights come from. */
export type StartingModelKind = "given" | "hub-cache" | "hub-download" | "shipped" | "random";

/** What {@linkcode chooseStartingModel} found. */
export interface StartingModel {
  /** The checkpoint folder; undefined for `random`. */
  dir?: string;
  kind: StartingModelKind;
  /** One line: which model, from where, and why (e.g. why the hub was not used). */
  why: string;
  /** For `shipped` and `random`: a few lines on what the accuracy of such a start means. */
  notice?: string[];
}

/** Options of {@linkcode chooseStartingModel}. */
export interface ChooseStartingModelOptions {
  /** A folder the user chose (wins over everything). */
  model?: string;
  /** Never use the network (also `HF_HUB_OFFLINE=1`). */
  offline?: boolean;
  /** Try a download of {@linkcode DEFAULT_MODEL_ID} when it is not cached (default false: cache only). */
  download?: boolean;
  /** Give up a download after this many milliseconds (default 60,000). */
  downloadTimeoutMs?: number;
  /** The shipped folder (default {@linkcode shippedModelDir}); tests point it elsewhere. */
  shippedDir?: string;
  /** The hub cache (default `.cache/hub`, as `download` uses). */
  cache?: string;
}

/** The lines printed when a run starts from the shipped model. */
function shippedModelNotice(dir: string): string[] {
  return [
    `Starting from ${dir}: a BERT-Tiny-shaped model pre-trained by this project on IMDB train reviews`,
    "(masked-LM, then next-sentence pairs; about 5.7 hours of two CPU cores, ~172M tokens). It fills in masked",
    "words far better than chance, but it has seen a small fraction of the text of Google's BERT-Tiny: fine-tuned",
    "on a few thousand examples it beats random weights by a few points (SST-2 +7.3, IMDB reviews +3.5; its",
    `README.md). For real pre-trained weights: \`deno task bert download ${DEFAULT_MODEL_ID}\``,
    "(runs then find it in the cache).",
  ];
}

async function netAllowed(): Promise<boolean> {
  try {
    return (await Deno.permissions.query({ name: "net", host: "huggingface.co" })).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Finds the starting model: `options.model`, else {@linkcode DEFAULT_MODEL_ID} from the hub cache (or a download
 * when `download` is set and the network is allowed), else the shipped `data/pretrained/`, else random weights.
 *
 * @example
 * ```ts
 * const start = await chooseStartingModel({ offline: true });
 * console.log(start.why); // "data/pretrained (shipped with the project; offline: ...)"
 * ```
 */
export async function chooseStartingModel(options: ChooseStartingModelOptions = {}): Promise<StartingModel> {
  if (options.model) {
    if (!(await exists(options.model))) throw new Error(`${options.model}: model folder not found`);
    return { dir: options.model, kind: "given", why: options.model };
  }
  try {
    const cached = await downloadModel(DEFAULT_MODEL_ID, { offline: true, cache: options.cache });
    return { dir: cached.dir, kind: "hub-cache", why: `${DEFAULT_MODEL_ID} from the cache (${cached.dir})` };
  } catch { /* not cached */ }
  let hubWhy: string;
  if (options.offline || offlineFromEnv()) hubWhy = "offline (--offline or HF_HUB_OFFLINE=1)";
  else if (!options.download) hubWhy = `${DEFAULT_MODEL_ID} is not in the cache`;
  else if (!(await netAllowed())) hubWhy = "no network permission and not in the cache";
  else {
    try {
      console.log(`downloading ${DEFAULT_MODEL_ID} ...`);
      const ms = options.downloadTimeoutMs ?? 60_000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer from the hub within ${ms / 1000} s`)), ms);
      });
      try {
        const { dir } = await Promise.race([downloadModel(DEFAULT_MODEL_ID, { cache: options.cache }), timeout]);
        return { dir, kind: "hub-download", why: `${DEFAULT_MODEL_ID} (downloaded to ${dir})` };
      } finally {
        clearTimeout(timer);
      }
    } catch (err) {
      hubWhy = `the download failed: ${(err as Error).message}`;
    }
  }
  const shipped = options.shippedDir ?? relativeToCwd(shippedModelDir());
  if (await exists(join(shipped, "config.json"))) {
    return {
      dir: shipped,
      kind: "shipped",
      why: `${shipped}, the model shipped with the project (${hubWhy})`,
      notice: shippedModelNotice(shipped),
    };
  }
  return {
    kind: "random",
    why: `none pre-trained: ${hubWhy}, and ${shipped} is missing`,
    notice: ["Training starts from RANDOM weights: accuracy then only shows that the pipeline works."],
  };
}
