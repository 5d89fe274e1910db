/**
 * lib/io/env.ts: environment switches read as unset when empty or when the process may not read the environment.
 */
import { assertEquals } from "../shared.ts";
import { envVar } from "../../lib/io/env.ts";

Deno.test("envVar: a set variable, an empty one and an unset one", () => {
  Deno.env.set("BERT_ENV_TEST_SET", "blas");
  Deno.env.set("BERT_ENV_TEST_EMPTY", "");
  try {
    assertEquals(envVar("BERT_ENV_TEST_SET"), "blas");
    assertEquals(envVar("BERT_ENV_TEST_EMPTY"), undefined);
    assertEquals(envVar("BERT_ENV_TEST_UNSET_" + crypto.randomUUID().slice(0, 8)), undefined);
  } finally {
    Deno.env.delete("BERT_ENV_TEST_SET");
    Deno.env.delete("BERT_ENV_TEST_EMPTY");
  }
});

Deno.test("envVar: without --allow-env (or with a list that lacks the name) the variable counts as unset", async () => {
  const module = new URL("../../lib/io/env.ts", import.meta.url).href;
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    script,
    `import { envVar } from ${JSON.stringify(module)};\nconsole.log(JSON.stringify(envVar("HOME") ?? null));\n`,
  );
  try {
    for (const flags of [[], ["--allow-env=OTHER"]]) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", ...flags, script],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(new TextDecoder().decode(out.stderr), "", `flags ${flags.join(" ")}`);
      assertEquals(new TextDecoder().decode(out.stdout).trim(), "null", `flags ${flags.join(" ")}`);
    }
  } finally {
    await Deno.remove(script);
  }
});
