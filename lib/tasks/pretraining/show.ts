/**
 * Pre-training, step 5, **showing** an instance: {@linkcode describeInstance} (one row per token),
 * {@linkcode instanceText} (for terminals) and {@linkcode instanceHtml} (original vs masked tokens, coloured by what
 * masking did, for notebooks).
 * @module
 */
import { escapeHtml } from "../../viz/display.ts";
import type { FullTokenizer } from "../../text/tokenizer.ts";
import type { PretrainingInstance } from "./instances.ts";
import type { MaskKind } from "./masking.ts";

/** One row per token of an instance: what BERT sees, what it must predict, and its segment. */
export function describeInstance(
  instance: PretrainingInstance,
  tokenizer: FullTokenizer,
): { position: number; segment: number; original: string; input: string; target: string; masking: string }[] {
  const kinds = new Map(instance.mlmPositions.map((p, i) => [p, instance.mlmKinds[i]]));
  const original = tokenizer.convertIdsToTokens(instance.originalIds);
  const input = tokenizer.convertIdsToTokens(instance.inputIds);
  return original.map((t, p) => ({
    position: p,
    segment: instance.segmentIds[p],
    original: t,
    input: input[p],
    target: kinds.has(p) ? t : "",
    masking: kinds.get(p) ?? "",
  }));
}

/** A two-line plain-text view of an instance (for terminals): the original, then what BERT sees. */
export function instanceText(instance: PretrainingInstance, tokenizer: FullTokenizer): string {
  const rows = describeInstance(instance, tokenizer);
  const width = rows.map((r) => Math.max(r.original.length, r.input.length));
  const line = (pick: (r: (typeof rows)[number]) => string) => rows.map((r, i) => pick(r).padEnd(width[i])).join(" ");
  return `${instance.isRandomNext ? "NotNext" : "IsNext"}\noriginal:  ${line((r) => r.original)}\n` +
    `BERT sees: ${line((r) => r.input)}`;
}

const KIND_STYLE: Record<MaskKind, string> = {
  mask: "background:#fde2a7",
  random: "background:#f9c0c0",
  keep: "background:#c8e6c9",
};

/**
 * An HTML table of an instance: the original tokens above what BERT sees, chosen tokens coloured by what
 * masking did (yellow `[MASK]`, red random, green unchanged), segment B shaded, and the next-sentence label.
 */
export function instanceHtml(instance: PretrainingInstance, tokenizer: FullTokenizer, caption = ""): string {
  const rows = describeInstance(instance, tokenizer);
  const cell = (text: string, style: string) => `<td style="padding:2px 4px;${style}">${escapeHtml(text)}</td>`;
  const seg = (r: { segment: number }) => (r.segment ? "border-bottom:3px solid #90caf9;" : "");
  const original = rows.map((r) => cell(r.original, seg(r) + (r.masking ? "font-weight:bold;" : ""))).join("");
  const input = rows.map((r) => cell(r.input, seg(r) + (r.masking ? KIND_STYLE[r.masking as MaskKind] : ""))).join("");
  const label = instance.isRandomNext ? "NotNext (B is from another document)" : "IsNext (B follows A)";
  return `<table style="border-collapse:collapse;font-family:monospace;font-size:12px">` +
    `<caption style="text-align:left">${escapeHtml(caption)} next-sentence label: <b>${label}</b>; ` +
    `<span style="${KIND_STYLE.mask}">[MASK]</span> <span style="${KIND_STYLE.random}">random</span> ` +
    `<span style="${KIND_STYLE.keep}">kept</span>; segment B underlined blue</caption>` +
    `<tr><th style="text-align:left">original</th>${original}</tr>` +
    `<tr><th style="text-align:left">BERT sees</th>${input}</tr></table>`;
}
