/**
 * Test data shared by the pre-training tests: a synthetic corpus whose token ids name their document and position,
 * and a small real corpus with its tokenizer.
 * @module
 */
import { parseCorpusText } from "../../../lib/tasks/pretraining/corpus.ts";
import type { PretrainingVocab } from "../../../lib/tasks/pretraining/masking.ts";
import { FullTokenizer } from "../../../lib/text/tokenizer.ts";
import { Vocab } from "../../../lib/text/vocab.ts";
import { Rng } from "../../../lib/training/rng.ts";
import { assert } from "../../shared.ts";

/** Ids 0..4 are specials; document d's token k (counting through its sentences) is 5 + offset[d] + k. */
export function syntheticCorpus(docs: number, seed: number) {
  const rng = new Rng(seed);
  const out: number[][][] = [];
  const where = new Map<number, { doc: number; index: number }>();
  let next = 5;
  for (let d = 0; d < docs; d++) {
    const doc: number[][] = [];
    let index = 0;
    const sentences = 1 + rng.int(15);
    for (let s = 0; s < sentences; s++) {
      const len = 3 + rng.int(13);
      const sent: number[] = [];
      for (let k = 0; k < len; k++) {
        where.set(next, { doc: d, index: index++ });
        sent.push(next++);
      }
      doc.push(sent);
    }
    out.push(doc);
  }
  const vocab: PretrainingVocab = {
    size: next,
    padId: 0,
    clsId: 2,
    sepId: 3,
    maskId: 4,
    randomIds: Int32Array.from({ length: next - 5 }, (_, i) => i + 5),
    continuation: new Uint8Array(next),
  };
  return { docs: out, where, vocab };
}

/** Checks that `ids` are consecutive tokens of one document; returns [doc, first index, last index]. */
export function span(ids: number[], where: Map<number, { doc: number; index: number }>): [number, number, number] {
  const first = where.get(ids[0])!;
  ids.forEach((id, k) => {
    const w = where.get(id);
    assert(w && w.doc === first.doc && w.index === first.index + k, `not a contiguous span: ${ids}`);
  });
  return [first.doc, first.index, first.index + ids.length - 1];
}

/** Three short documents (about a cat, a bank for money, a river bank). */
export const TEXT = `The cat sat on the mat. It was a sunny day. The dog watched the cat.
The birds sang in the trees. Everyone was happy.

A bank is a place for money. She opened an account at the bank. The bank gave her a loan.
Interest rates were low that year.

The river bank was muddy. Fish swam near the bank of the river. The water was cold.
Children played by the river all afternoon.`;

/** A WordPiece tokenizer with a 120-token vocabulary learned from {@linkcode TEXT}. */
export async function smallTokenizer(): Promise<FullTokenizer> {
  const { buildVocab } = await import("../../../lib/text/vocab_builder.ts");
  const docs = parseCorpusText(TEXT).documents.flat();
  return new FullTokenizer(Vocab.fromTokens(buildVocab(docs, { vocabSize: 120, minFrequency: 1 })));
}
