/**
 * Pre-training, step 2a, BERT's **masked-LM corruption** (Google's `create_pretraining_data.py`): 15% of the
 * WordPiece tokens (never `[CLS]`/`[SEP]`/`[PAD]`) are chosen for prediction; 80% of them become `[MASK]`, 10% a
 * random token, 10% stay as they are ({@linkcode maskTokens}; whole-word masking keeps a word's pieces together).
 * {@linkcode pretrainingVocab} gives the ids masking needs, {@linkcode vocabFingerprint} ties data to a vocabulary.
 * @module
 */
import type { Vocab } from "../../text/vocab.ts";
import type { Rng } from "../../training/rng.ts";

/** The ids masking needs. */
export interface PretrainingVocab {
  size: number;
  clsId: number;
  sepId: number;
  maskId: number;
  padId: number;
  /** Ids a "random token" replacement is drawn from: every token except bracketed specials (`[PAD]`, `[UNK]`,
   * `[CLS]`, `[SEP]`, `[MASK]`, `[unused0]`, ...). */
  randomIds: Int32Array;
  /** 1 for a WordPiece continuation (`##ing`), 0 otherwise: whole-word masking keeps a word's pieces together. */
  continuation: Uint8Array;
}

/** The {@linkcode PretrainingVocab} of a vocabulary; throws naming the missing special token. */
export function pretrainingVocab(vocab: Vocab): PretrainingVocab {
  const need = (t: string) => {
    const id = vocab.id(t);
    if (id === undefined) {
      throw new Error(`${vocab.source}: the vocabulary has no ${t} token, which pre-training needs`);
    }
    return id;
  };
  const randomIds: number[] = [];
  vocab.tokens.forEach((t, i) => {
    if (!/^\[[^\]]*\]$/.test(t)) randomIds.push(i);
  });
  if (randomIds.length === 0) throw new Error(`${vocab.source}: the vocabulary has only special tokens`);
  return {
    size: vocab.size,
    clsId: need("[CLS]"),
    sepId: need("[SEP]"),
    maskId: need("[MASK]"),
    padId: need("[PAD]"),
    randomIds: Int32Array.from(randomIds),
    continuation: Uint8Array.from(vocab.tokens, (t) => (t.startsWith("##") ? 1 : 0)),
  };
}

/** What happened to a token chosen for prediction. */
export type MaskKind = "mask" | "random" | "keep";

/** Masking split of the chosen tokens: 80% `[MASK]`, 10% random, 10% unchanged. */
export const MASK_SPLIT = { mask: 0.8, random: 0.1, keep: 0.1 } as const;

/** The result of {@linkcode maskTokens}. */
export interface MaskedTokens {
  /** The sequence with the chosen tokens replaced. */
  inputIds: number[];
  /** Chosen positions, ascending. */
  positions: number[];
  /** Original ids at `positions` (the prediction targets). */
  labels: number[];
  /** What was done at each chosen position. */
  kinds: MaskKind[];
}

/**
 * BERT's masked-LM corruption of one sequence. Candidates are all positions except `[CLS]`, `[SEP]` and `[PAD]`;
 * `min(maxPredictions, max(1, round(candidates * maskedLmProb)))` of them are chosen uniformly at random
 * (whole WordPiece tokens); each chosen token becomes `[MASK]` with probability 0.8, a random vocabulary token
 * (never a special one) with 0.1, and stays unchanged with 0.1 — the model must predict the original at every
 * chosen position, so it cannot tell which inputs to trust.
 *
 * Google's script counts `[CLS]`/`[SEP]` in the 15%; here the 15% is of the maskable tokens.
 */
export function maskTokens(
  ids: readonly number[],
  vocab: PretrainingVocab,
  rng: Rng,
  options: { maskedLmProb?: number; maxPredictions?: number; wholeWord?: boolean } = {},
): MaskedTokens {
  const prob = options.maskedLmProb ?? 0.15;
  const maxPredictions = options.maxPredictions ?? 20;
  // Candidate groups: single positions, or with wholeWord the positions of one word (a piece plus its ## pieces).
  const groups: number[][] = [];
  let count = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id === vocab.clsId || id === vocab.sepId || id === vocab.padId) continue;
    const last = groups[groups.length - 1];
    if (options.wholeWord && vocab.continuation[id] && last && last[last.length - 1] === i - 1) last.push(i);
    else groups.push([i]);
    count++;
  }
  // Fisher-Yates, then take groups while they fit in k.
  for (let i = groups.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [groups[i], groups[j]] = [groups[j], groups[i]];
  }
  const k = Math.min(maxPredictions, count, Math.max(1, Math.round(count * prob)));
  const chosen: number[] = [];
  for (const g of groups) {
    if (chosen.length >= k) break;
    if (chosen.length + g.length > k) continue; // Google's script skips a word that would overshoot
    chosen.push(...g);
  }
  chosen.sort((a, b) => a - b);
  const inputIds = ids.slice();
  const kinds: MaskKind[] = [];
  for (const p of chosen) {
    const r = rng.next();
    if (r < MASK_SPLIT.mask) {
      inputIds[p] = vocab.maskId;
      kinds.push("mask");
    } else if (r < MASK_SPLIT.mask + MASK_SPLIT.keep) {
      kinds.push("keep");
    } else {
      inputIds[p] = vocab.randomIds[rng.int(vocab.randomIds.length)];
      kinds.push("random");
    }
  }
  return { inputIds, positions: chosen, labels: chosen.map((p) => ids[p]), kinds };
}

/** FNV-1a (32-bit, hex) over the vocabulary's tokens: pre-training data and a vocabulary file must agree. */
export function vocabFingerprint(vocab: Vocab): string {
  let h = 0x811c9dc5;
  for (const t of vocab.tokens) {
    for (let i = 0; i < t.length; i++) h = Math.imul(h ^ t.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ 10, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}
