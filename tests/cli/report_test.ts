/**
 * lib/cli/report.ts: the note printed when a classifier predicts one class for every example (the usual sign of a
 * learning rate too small for the model).
 */
import { assert, assertEquals } from "../shared.ts";
import { oneClassHint } from "../../lib/cli/report.ts";

Deno.test("oneClassHint: a note when every prediction is one class, naming it and its share of the gold labels", () => {
  // MRPC dev fine-tuned at 2e-5 from data/pretrained: 129 gold "0", 279 gold "1", all predicted "1".
  const hint = oneClassHint({ confusionMatrix: [[0, 129], [0, 279]], labelNames: ["0", "1"] });
  assert(hint !== undefined, "expected a note");
  assert(hint.includes('all 408 predictions are "1"'), hint);
  assert(hint.includes("68.4%"), hint);
  assert(hint.includes("--lr 1e-3"), hint);
  // Three classes, all predicted as the rarest.
  assert(oneClassHint({ confusionMatrix: [[0, 0, 5], [0, 0, 1], [0, 0, 2]], labelNames: ["a", "b", "c"] })!
    .includes('all 8 predictions are "c", the gold label of 25.0%'));
});

Deno.test("oneClassHint: nothing when two classes are predicted, when the gold labels are one class, or without a confusion matrix", () => {
  assertEquals(oneClassHint({ confusionMatrix: [[5, 1], [0, 3]], labelNames: ["neg", "pos"] }), undefined);
  // Every gold label is one class, and so is every prediction: right, not stuck.
  assertEquals(oneClassHint({ confusionMatrix: [[4, 0], [0, 0]], labelNames: ["neg", "pos"] }), undefined);
  assertEquals(oneClassHint({ exactMatch: 80, f1: 88 }), undefined);
  assertEquals(oneClassHint({ confusionMatrix: [[0, 0], [0, 0]] }), undefined);
  assertEquals(oneClassHint(undefined), undefined);
});
