/**
 * Where the read-only shared test material lives (`../shared` from the project root) and whether it is present.
 * Tests that need it use `ignore: !HAVE_SHARED` and warn once, so a fresh clone's test run skips them with a
 * clear message instead of failing.
 * @module
 */

/** Path of the shared material, relative to the project root (override with `BERT_SHARED`). */
export const SHARED: string = Deno.env.get("BERT_SHARED") ?? "../shared";

function present(): boolean {
  try {
    return Deno.statSync(SHARED).isDirectory;
  } catch {
    return false;
  }
}

/** True when {@linkcode SHARED} exists (tests needing it are skipped otherwise). */
export const HAVE_SHARED: boolean = present();

if (!HAVE_SHARED) {
  console.warn(`warning: ${SHARED} is absent: tests that need the shared datasets/golden files are skipped`);
}

/** Returns `SHARED/rel`, throwing a clear error when the shared folder is absent. */
export function requireShared(rel = ""): string {
  if (!HAVE_SHARED) throw new Error(`${SHARED} is absent: this test needs the shared datasets (see ../shared/README.md)`);
  return rel ? `${SHARED}/${rel}` : SHARED;
}
