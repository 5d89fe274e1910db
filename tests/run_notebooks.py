#!/usr/bin/python3
"""Headless notebook executor for the Deno Jupyter kernel (driven by tests/run_notebooks.ts).

Runs each notebook top to bottom through a real kernel with jupyter_client, stores every output in an executed
copy (display updates applied in place, like the notebook UI does) and reports the first failing cell.

Why not nbclient: the Deno kernel can report `status: idle` before its last outputs (e.g. a cell's
execute_result) arrive on iopub. nbclient stops listening for a cell at idle and silently drops those outputs.
Here every iopub message is routed to its cell by `parent_header.msg_id` for the whole run, each cell waits for a
short quiet period after idle, and the run ends with a longer quiet period, so late outputs still land in the
right cell. The shell reply (not the presence of an error output, which the Deno kernel sometimes omits) decides
whether a cell failed.

Usage: run_notebooks.py --plan plan.json --results results.json
plan.json: {"kernel_name": "deno", "cell_timeout": 600, "quiet": 0.3, "final_quiet": 1.0, "html": true,
            "notebooks": [{"name", "path", "out", "overrides_source" (code or null), "expect": {...} (self-test)}]}
results.json: [{"name", "ok", "seconds", "failed_cell", "code_cell", "error", "traceback", "source", "out"}]
"""

import argparse
import json
import os
import queue
import re
import sys
import time

import nbformat
from jupyter_client.manager import KernelManager

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text):
    return ANSI.sub("", text)


class CellState:
    def __init__(self, cell, index, code_index):
        self.cell = cell
        self.index = index
        self.code_index = code_index
        self.idle = False
        self.reply = None
        self.clear_pending = False
        self.late_outputs = 0  # outputs that arrived after this cell's idle status


class NotebookRun:
    def __init__(self, kc, nb, quiet):
        self.kc = kc
        self.nb = nb
        self.quiet = quiet
        self.by_msg = {}
        self.display_outputs = {}  # display_id -> list of output dicts (updated in place)
        self.stats = {"update_display_data": 0, "late_outputs": 0}

    # ---- iopub routing -------------------------------------------------------------------------------------
    def handle_iopub(self, msg):
        parent = msg.get("parent_header", {}).get("msg_id")
        state = self.by_msg.get(parent)
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "update_display_data":
            # Updates apply to every output with that display_id, wherever it is (like the notebook UI).
            display_id = content.get("transient", {}).get("display_id")
            for out in self.display_outputs.get(display_id, []):
                out["data"] = content.get("data", {})
                out["metadata"] = content.get("metadata", {})
            self.stats["update_display_data"] += 1
            return
        if state is None:
            return
        if msg_type == "status":
            if content.get("execution_state") == "idle":
                state.idle = True
            return
        if msg_type == "execute_input":
            state.cell["execution_count"] = content.get("execution_count")
            return
        if msg_type == "clear_output":
            if content.get("wait"):
                state.clear_pending = True
            else:
                state.cell["outputs"] = []
            return
        output = None
        if msg_type == "stream":
            output = nbformat.v4.new_output("stream", name=content["name"], text=content["text"])
        elif msg_type == "display_data":
            output = nbformat.v4.new_output(
                "display_data", data=content.get("data", {}), metadata=content.get("metadata", {})
            )
            display_id = content.get("transient", {}).get("display_id")
            if display_id:
                self.display_outputs.setdefault(display_id, []).append(output)
        elif msg_type == "execute_result":
            output = nbformat.v4.new_output(
                "execute_result",
                data=content.get("data", {}),
                metadata=content.get("metadata", {}),
                execution_count=content.get("execution_count"),
            )
        elif msg_type == "error":
            output = nbformat.v4.new_output(
                "error", ename=content.get("ename", ""), evalue=content.get("evalue", ""),
                traceback=content.get("traceback", []),
            )
        if output is None:
            return
        if state.idle:
            state.late_outputs += 1
            self.stats["late_outputs"] += 1
        if state.clear_pending:
            state.cell["outputs"] = []
            state.clear_pending = False
        outputs = state.cell["outputs"]
        if output["output_type"] == "stream" and outputs and outputs[-1]["output_type"] == "stream" \
                and outputs[-1]["name"] == output["name"]:
            outputs[-1]["text"] += output["text"]
        else:
            outputs.append(output)

    def pump(self, timeout):
        """Handles iopub messages for up to `timeout` seconds; returns True if any arrived."""
        got = False
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return got
            try:
                msg = self.kc.get_iopub_msg(timeout=min(remaining, 0.05))
            except queue.Empty:
                continue
            got = True
            self.handle_iopub(msg)

    def drain(self, quiet):
        """Reads iopub until no message has arrived for `quiet` seconds."""
        while self.pump(quiet):
            pass

    # ---- execution -----------------------------------------------------------------------------------------
    def execute(self, state, timeout, km):
        code = state.cell["source"]
        msg_id = self.kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
        self.by_msg[msg_id] = state
        state.cell["outputs"] = []
        deadline = time.monotonic() + timeout
        while state.reply is None or not state.idle:
            if time.monotonic() > deadline:
                km.interrupt_kernel()
                return f"timed out after {timeout:.0f} s"
            if not km.is_alive():
                return "the kernel died"
            self.pump(0.05)
            try:
                reply = self.kc.get_shell_msg(timeout=0.01)
            except queue.Empty:
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                state.reply = reply["content"]
        # The Deno kernel can send outputs after idle: wait for a quiet period before the next cell.
        self.drain(self.quiet)
        return None


def error_of(state):
    """(summary, traceback text) of a failed cell from its reply and error outputs."""
    reply = state.reply or {}
    ename = reply.get("ename")
    evalue = reply.get("evalue")
    tb = reply.get("traceback") or []
    for out in state.cell.get("outputs", []):
        if out["output_type"] == "error":
            ename = ename or out.get("ename")
            evalue = evalue or out.get("evalue")
            tb = tb or out.get("traceback", [])
    summary = f"{ename or 'Error'}: {evalue or '(the kernel gave no message)'}"
    return strip_ansi(summary), strip_ansi("\n".join(tb))


def inject_overrides(nb, source):
    """Inserts an override cell right after the first code cell (tagged "parameters"); returns its index."""
    first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)
    if first is None:
        raise ValueError("the notebook has no code cell to hold the parameters")
    cell = nbformat.v4.new_code_cell(source=source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(first + 1, cell)
    return first + 1


def run_one(entry, plan):
    started = time.monotonic()
    result = {"name": entry["name"], "ok": False, "out": entry["out"], "failed_cell": None, "code_cell": None,
              "error": None, "traceback": "", "source": "", "late_outputs": 0, "display_updates": 0}
    nb = nbformat.read(entry["path"], as_version=4)
    injected = None
    if entry.get("overrides_source"):
        injected = inject_overrides(nb, entry["overrides_source"])
    cwd = os.path.dirname(os.path.abspath(entry["path"]))
    km = KernelManager(kernel_name=plan.get("kernel_name", "deno"))
    os.makedirs(os.path.dirname(entry["out"]) or ".", exist_ok=True)
    log_path = entry["out"][: -len(".ipynb")] + ".kernel.log"
    log = open(log_path, "w", encoding="utf-8")  # the kernel's own stdout/stderr (crashes, warnings)
    result["kernel_log"] = log_path
    km.start_kernel(cwd=cwd, stdout=log, stderr=log)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=plan.get("startup_timeout", 120))
        run = NotebookRun(kc, nb, plan.get("quiet", 0.3))
        code_index = 0
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            # Cell numbers in messages refer to the notebook file (the injected cell is not counted).
            file_index = index if injected is None or index < injected else index - 1
            state = CellState(cell, file_index, code_index)
            code_index += 1
            problem = run.execute(state, plan.get("cell_timeout", 600), km)
            failed = problem is not None or (state.reply or {}).get("status") != "ok"
            if failed:
                run.drain(plan.get("final_quiet", 1.0))
                summary, tb = error_of(state)
                result.update(
                    failed_cell=("injected parameters" if index == injected else file_index),
                    code_cell=state.code_index,
                    error=problem or summary,
                    traceback=tb,
                    source=cell.source,
                )
                break
        else:
            run.drain(plan.get("final_quiet", 1.0))
            result["ok"] = True
        result["late_outputs"] = run.stats["late_outputs"]
        result["display_updates"] = run.stats["update_display_data"]
    except Exception as err:  # kernel start-up problems and the like
        result["error"] = f"{type(err).__name__}: {err}"
    finally:
        try:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        except Exception:
            km.shutdown_kernel(now=True)
        log.close()
    result["seconds"] = round(time.monotonic() - started, 1)
    tmp = entry["out"] + ".tmp"
    nbformat.write(nb, tmp)
    os.replace(tmp, entry["out"])
    if plan.get("html"):
        result["html"] = write_html(entry["out"])
    return result


def write_html(ipynb_path):
    """nbconvert HTML next to the executed copy; returns its path or None (a warning) if nbconvert fails."""
    try:
        from nbconvert import HTMLExporter
        body, _ = HTMLExporter().from_filename(ipynb_path)
        html_path = ipynb_path[: -len(".ipynb")] + ".html"
        with open(html_path + ".tmp", "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(html_path + ".tmp", html_path)
        return html_path
    except Exception as err:
        print(f"warning: nbconvert HTML export of {ipynb_path} failed: {err}", file=sys.stderr)
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--results", required=True)
    args = parser.parse_args()
    with open(args.plan, encoding="utf-8") as f:
        plan = json.load(f)
    results = []
    echo = plan.get("echo", True)  # the self-test's notebooks fail on purpose: tests/run_notebooks.ts reports them
    for entry in plan["notebooks"]:
        if echo:
            print(f"== {entry['name']}: running {entry['path']}", flush=True)
        result = run_one(entry, plan)
        results.append(result)
        if not echo:
            pass
        elif result["ok"]:
            print(f"   ok in {result['seconds']} s -> {result['out']}", flush=True)
        else:
            where = result["failed_cell"]
            print(f"   FAILED in {result['seconds']} s at cell {where}: {result['error']}", flush=True)
        with open(args.results, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
