/**
 * Screenshots of executed notebooks' HTML in headless Chromium, to check by eye that every plot draws offline.
 * Not a CI test (it needs Chromium: `sudo apt-get install -y chromium`).
 *
 * `deno run --allow-read --allow-write=outputs --allow-run tests/screenshot_notebooks.ts [--dir DIR] [name ...]`
 *
 * For each `DIR/<name>.ipynb` (default DIR: `outputs/notebooks/stock`, what `deno task test:notebooks` wrote with
 * stock `jupyter nbconvert --execute`; `outputs/notebooks` for the runner's copies) it exports HTML with stock
 * `jupyter nbconvert --to html`, then Chromium (no network, no sandbox) runs the page and writes
 * `DIR/screenshots/<name>.png`: a full-height capture of the page. Before the capture a small script counts the
 * plot divs that plotly drew (`.bert-plot .main-svg`), looks for "plotly.js is not loaded" and measures the
 * page height (read back with `--dump-dom`); the exit code is 1 when any plot did not draw.
 * @module
 */

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const PYTHON = Deno.env.get("JUPYTER_PYTHON") ?? "/usr/bin/python3";
const CHROMIUM = Deno.env.get("CHROMIUM") ?? "chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--hide-scrollbars",
];

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string; err: string }> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  return { ok: o.success, out: new TextDecoder().decode(o.stdout), err: new TextDecoder().decode(o.stderr) };
}

/** The check appended to the page: after plotly had time to draw, writes the counts into the document title. */
const PROBE = `<script>setTimeout(function () {
  var divs = document.querySelectorAll(".bert-plot");
  var drawn = 0;
  divs.forEach(function (d) { if (d.querySelector(".main-svg")) drawn++; });
  var missing = document.body.innerText.indexOf("plotly.js is not loaded") >= 0;
  document.title = "PLOTS " + drawn + "/" + divs.length + (missing ? " NOT-LOADED" : "") +
    " HEIGHT " + document.documentElement.scrollHeight;
}, 3000);</script>`;

async function main(argv: string[]): Promise<number> {
  const dirAt = argv.indexOf("--dir");
  const given = dirAt >= 0 ? argv[dirAt + 1] : `${ROOT}/outputs/notebooks/stock`;
  const dir = given.startsWith("/") ? given : `${Deno.cwd()}/${given}`;
  const names = argv.filter((a, i) => !a.startsWith("--") && (dirAt < 0 || i !== dirAt + 1));
  const all: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".ipynb") && !e.name.endsWith(".input.ipynb")) all.push(e.name.slice(0, -6));
  }
  all.sort();
  const wanted = names.length ? all.filter((n) => names.some((w) => n.startsWith(w))) : all;
  if (!(await run(CHROMIUM, ["--version"]).catch(() => ({ ok: false })) as { ok: boolean }).ok) {
    console.error(`${CHROMIUM} not found: sudo apt-get install -y chromium (or set CHROMIUM=/path/to/chrome)`);
    return 2;
  }
  await Deno.mkdir(`${dir}/screenshots`, { recursive: true });
  let bad = 0;
  for (const name of wanted) {
    const conv = await run(PYTHON, ["-m", "nbconvert", "--to", "html", `${dir}/${name}.ipynb`]);
    if (!conv.ok) {
      console.error(`FAIL ${name}: nbconvert --to html failed:\n${conv.err.slice(-2000)}`);
      bad++;
      continue;
    }
    const html = `${dir}/${name}.html`;
    const probed = `${dir}/screenshots/${name}.probe.html`;
    await Deno.writeTextFile(probed, (await Deno.readTextFile(html)).replace("</body>", `${PROBE}</body>`));
    const url = `file://${probed}`;
    // The page's full height: ask Chromium for the DOM after the probe ran, then take one tall screenshot.
    const dom = await run(CHROMIUM, [...FLAGS, "--virtual-time-budget=8000", "--dump-dom", url]);
    const title = dom.out.match(/<title>(PLOTS [^<]*)<\/title>/)?.[1] ?? "PLOTS ?";
    const [drawn, total] = (title.match(/PLOTS (\d+)\/(\d+)/) ?? ["", "0", "-1"]).slice(1).map(Number);
    const height = Math.min(30000, Number(title.match(/HEIGHT (\d+)/)?.[1] ?? 8000) + 50);
    const png = `${dir}/screenshots/${name}.png`;
    const shot = await run(CHROMIUM, [
      ...FLAGS,
      "--virtual-time-budget=8000",
      `--window-size=1200,${height}`,
      `--screenshot=${png}`,
      url,
    ]);
    const ok = shot.ok && total >= 0 && drawn === total && !title.includes("NOT-LOADED");
    if (!ok) bad++;
    console.log(
      `${ok ? "PASS" : "FAIL"} ${name}: ${drawn}/${total} plots drawn${
        title.includes("NOT-LOADED") ? ', "plotly.js is not loaded" shown' : ""
      } -> ${png.replace(ROOT + "/", "")}`,
    );
  }
  return bad ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
