"""Run All simulation for one notebook: queue every code cell at once (as Jupyter's "Run All" does), route iopub
outputs by their parent msg_id, report any output that arrives after its cell's idle, and compare each cell's
display and text-line counts with the runner's executed copy (outputs/notebooks/<name>.ipynb, written by
`deno task test:notebooks`). Not a CI test.

  JUPYTER_PATH=.jupyter/jupyter /usr/bin/python3 tests/run_notebooks_runall.py 03_evaluate 'run = "nbtest";'

The second argument is the parameter override cell (use the runner's, so that the counts compare).
"""
import json, os, sys, time, queue
from jupyter_client.manager import KernelManager
name, override = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
nb = json.load(open(f'{ROOT}/notebooks/{name}.ipynb'))
ref = json.load(open(f'{ROOT}/outputs/notebooks/{name}.ipynb'))
codes = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
codes.insert(1, override)
km = KernelManager(kernel_name='deno'); km.start_kernel(cwd=f'{ROOT}/notebooks')
kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=120)
ids = [kc.execute(c) for c in codes]
outs = {i: [] for i in ids}; idle = set(); t0 = time.time()
while len(idle) < len(ids) and time.time() - t0 < 900:
    try: m = kc.get_iopub_msg(timeout=5)
    except queue.Empty: continue
    pid = m['parent_header'].get('msg_id'); t = m['msg_type']
    if t == 'status' and m['content']['execution_state'] == 'idle' and pid in outs: idle.add(pid)
    elif t in ('display_data', 'stream', 'execute_result', 'error') and pid in outs:
        if pid in idle: print('LATE output after idle for cell', ids.index(pid), t)
        outs[pid].append(m)
time.sleep(2)
while True:
    try: m = kc.get_iopub_msg(timeout=1)
    except queue.Empty: break
    pid = m['parent_header'].get('msg_id')
    if m['msg_type'] in ('display_data', 'stream') and pid in outs: print('LATE (after all idle) cell', ids.index(pid), m['msg_type'])
kc.stop_channels(); km.shutdown_kernel(now=True)
def kinds(msgs):
    d = sum(1 for m in msgs if m['msg_type'] == 'display_data')
    lines = sum(m['content']['text'].count('\n') for m in msgs if m['msg_type'] == 'stream')
    return d, lines
refcells = [c for c in ref['cells'] if c['cell_type'] == 'code']
bad = 0
for k, pid in enumerate(ids):
    got = kinds(outs[pid])
    r = refcells[k]['outputs'] if k < len(refcells) else []
    exp = (sum(1 for o in r if o['output_type'] == 'display_data'), sum(''.join(o['text']).count('\n') for o in r if o['output_type'] == 'stream'))
    if got[0] != exp[0] or got[1] != exp[1]:
        bad += 1; print(f'cell {k}: runner displays/lines {exp}, run-all {got}')
print(f'{name}: {len(ids)} cells, {bad} differ', 'in', round(time.time() - t0), 's')
sys.exit(1 if bad else 0)
