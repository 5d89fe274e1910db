/**
 * A Python pickle reader that never executes anything: it understands the opcodes of protocols 0–5 that data
 * (numbers, strings, bytes, lists, tuples, dicts) need, and resolves `GLOBAL` / `STACK_GLOBAL` only through a
 * whitelist given by the caller. A global outside it — `os.system`, `builtins.eval`, `subprocess.Popen` — is refused
 * at the opcode that names it, before any `REDUCE` could call it, with an error that names the global. A whitelisted
 * global is never Python code either: `REDUCE` calls the caller's JavaScript handler with the arguments.
 *
 * Values: `None` → null, bool → boolean, int → number (bigint beyond 2^53), float → number, str → string,
 * bytes → Uint8Array, list and tuple → array, dict → Map.
 * @module
 */

/** What a whitelisted global does when a pickle uses it. */
export interface GlobalHandler {
  /** `REDUCE`: builds the object from the arguments tuple. Without it the global cannot be called. */
  call?: (args: unknown[]) => unknown;
  /** `BUILD` on an object this global made (e.g. an OrderedDict's `_metadata`); default: refuse. */
  build?: (object: unknown, state: unknown) => unknown;
}

/** A resolved whitelisted global on the stack. */
export class PickleGlobal {
  /** The global's module and name, e.g. `collections` and `OrderedDict`. */
  constructor(readonly module: string, readonly name: string, readonly handler: GlobalHandler) {}
  /** `module.name`. */
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** Options of {@linkcode unpickle}. */
export interface UnpickleOptions {
  /** Named in every error (a file, or a file and member). */
  source?: string;
  /** Allowed globals by `module.name`. Anything else is refused. */
  globals: Record<string, GlobalHandler>;
  /** Resolves `PERSID` / `BINPERSID` ids (PyTorch's storages). Without it they are refused. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Where the pickle starts in `bytes` (default 0); several pickles may follow each other. */
  offset?: number;
}

/** Thrown for a global that is not on the whitelist. */
export class ForbiddenGlobalError extends Error {
  constructor(message: string, readonly global: string) {
    super(message);
    this.name = "ForbiddenGlobalError";
  }
}

/** Thrown when the bytes end before the pickle's STOP (a caller reading a prefix of a file may read more). */
export class PickleTruncatedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PickleTruncatedError";
  }
}

/** Objects made by a whitelisted global, to find their BUILD handler. */
const MADE_BY = new WeakMap<object, PickleGlobal>();

const OPCODE_NAMES: Record<number, string> = {
  0x80: "PROTO",
  0x95: "FRAME",
  0x2e: "STOP",
  0x28: "MARK",
  0x81: "NEWOBJ",
  0x92: "NEWOBJ_EX",
  0x69: "INST",
  0x6f: "OBJ",
  0x82: "EXT1",
  0x83: "EXT2",
  0x84: "EXT4",
  0x8f: "EMPTY_SET",
  0x90: "ADDITEMS",
  0x91: "FROZENSET",
  0x96: "BYTEARRAY8",
  0x97: "NEXT_BUFFER",
  0x98: "READONLY_BUFFER",
};

/**
 * Reads one pickle from `bytes` (at `options.offset`) and returns its value and the offset just past its `STOP`.
 * Throws naming the source, the byte offset and the opcode on anything outside the supported subset.
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): { value: unknown; end: number } {
  const source = options.source ?? "pickle";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder("utf-8");
  const latin1 = new TextDecoder("latin1");
  let p = options.offset ?? 0;
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();

  const fail = (what: string, at = p): never => {
    throw new Error(`${source}: pickle byte ${at}: ${what}`);
  };
  const need = (n: number) => {
    if (p + n > bytes.length) {
      throw new PickleTruncatedError(
        `${source}: pickle byte ${p}: truncated: needs ${n} more bytes, the data end at ${bytes.length}`,
      );
    }
  };
  const u8 = () => (need(1), bytes[p++]);
  const u16 = () => (need(2), (p += 2), view.getUint16(p - 2, true));
  const u32 = () => (need(4), (p += 4), view.getUint32(p - 4, true));
  const i32 = () => (need(4), (p += 4), view.getInt32(p - 4, true));
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(p, true);
    p += 8;
    if (v > BigInt(bytes.length)) fail(`length ${v} is larger than the data`);
    return Number(v);
  };
  const take = (n: number) => {
    need(n);
    p += n;
    return bytes.subarray(p - n, p);
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0) throw new PickleTruncatedError(`${source}: pickle byte ${p}: truncated: a text argument has no end`);
    const text = latin1.decode(bytes.subarray(p, end));
    p = end + 1;
    return text;
  };
  const pop = () => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) fail("stack underflow");
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) fail("stack underflow");
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail("no MARK to pop to");
    return stack.splice(m!);
  };
  const resolveGlobal = (module: string, name: string, at: number): PickleGlobal => {
    const key = `${module}.${name}`;
    const handler = Object.hasOwn(options.globals, key) ? options.globals[key] : undefined;
    if (!handler) {
      throw new ForbiddenGlobalError(
        `${source}: pickle byte ${at}: refusing global "${key}": a checkpoint's pickle may only use ` +
          `${Object.keys(options.globals).join(", ")}; this file asks for something else and was not loaded ` +
          `(nothing in it was executed)`,
        key,
      );
    }
    return new PickleGlobal(module, name, handler);
  };
  const long = (data: Uint8Array): number | bigint => {
    if (data.length === 0) return 0;
    let v = 0n;
    for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]);
    if (data[data.length - 1] & 0x80) v -= 1n << BigInt(8 * data.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const setItems = (dict: unknown, items: unknown[]) => {
    if (!(dict instanceof Map)) fail("SETITEM(S) on something that is not a dict");
    for (let i = 0; i + 1 < items.length; i += 2) (dict as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };
  const appendItems = (list: unknown, items: unknown[]) => {
    if (!Array.isArray(list)) fail("APPEND(S) on something that is not a list");
    (list as unknown[]).push(...items);
  };
  const persistent = (pid: unknown) => {
    if (!options.persistentLoad) fail("persistent id without a loader (not a PyTorch checkpoint pickle?)");
    return options.persistentLoad!(pid);
  };

  for (;;) {
    const at = p;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("pickle protocol above 5", at);
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack`, at);
        return { value: stack[0], end: p };
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x49: { // INT
        const text = line();
        if (text === "01" || text === "00") stack.push(text === "01");
        else if (/^-?\d+$/.test(text)) stack.push(Number(text));
        else fail(`bad INT ${JSON.stringify(text)}`, at);
        break;
      }
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x4c: { // LONG
        const text = line().replace(/L$/, "");
        if (!/^-?\d+$/.test(text)) fail(`bad LONG ${JSON.stringify(text)}`, at);
        const v = BigInt(text);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x8a: // LONG1
        stack.push(long(take(u8())));
        break;
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) fail("negative LONG4 length", at);
        stack.push(long(take(n)));
        break;
      }
      case 0x46: // FLOAT
        stack.push(parseFloat(line()));
        break;
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(p, false));
        p += 8;
        break;
      case 0x53: { // STRING (quoted repr)
        const text = line();
        const m = text.match(/^(['"])(.*)\1$/s);
        if (!m) fail(`bad STRING ${JSON.stringify(text.slice(0, 40))}`, at);
        stack.push(m![2]);
        break;
      }
      case 0x54: { // BINSTRING
        const n = i32();
        if (n < 0) fail("negative BINSTRING length", at);
        stack.push(latin1.decode(take(n)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(take(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64()).slice());
        break;
      case 0x56: // UNICODE (raw-unicode-escape)
        stack.push(line().replace(/\\u([0-9a-fA-F]{4})/g, (_, h) => String.fromCharCode(parseInt(h, 16))));
        break;
      case 0x58: // BINUNICODE
        stack.push(decoder.decode(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(decoder.decode(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(decoder.decode(take(u64())));
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: { // APPEND
        const item = pop();
        appendItems(top(), [item]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: { // DICT
        const dict = new Map();
        setItems(dict, popMark());
        stack.push(dict);
        break;
      }
      case 0x73: { // SETITEM
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        stack.push(resolveGlobal(module, name, at));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL without two strings", at);
        stack.push(resolveGlobal(module as string, name as string, at));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const callable = pop();
        if (!(callable instanceof PickleGlobal) || !callable.handler.call) {
          fail(
            `REDUCE on ${callable instanceof PickleGlobal ? `"${callable.qualifiedName}"` : "a non-global"}, ` +
              `which this reader does not call`,
            at,
          );
        }
        if (!Array.isArray(args)) fail("REDUCE arguments are not a tuple", at);
        const global = callable as PickleGlobal;
        let made: unknown;
        try {
          made = global.handler.call!(args as unknown[]);
        } catch (err) {
          fail(`${global.qualifiedName}: ${(err as Error).message}`, at);
        }
        if (typeof made === "object" && made !== null) MADE_BY.set(made, global);
        stack.push(made);
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const object = top();
        const maker = typeof object === "object" && object !== null ? MADE_BY.get(object) : undefined;
        if (!maker?.handler.build) {
          fail(`BUILD (setting the state of an object) on ${maker ? `"${maker.qualifiedName}"` : "a plain value"}`, at);
        }
        stack[stack.length - 1] = maker!.handler.build!(object, state);
        break;
      }
      case 0x50: // PERSID
        stack.push(persistent(line()));
        break;
      case 0x51: // BINPERSID
        stack.push(persistent(pop()));
        break;
      case 0x67: { // GET
        const key = Number(line());
        if (!memo.has(key)) fail(`GET of memo ${key}, which was never PUT`, at);
        stack.push(memo.get(key));
        break;
      }
      case 0x68: // BINGET
      case 0x6a: { // LONG_BINGET
        const key = op === 0x68 ? u8() : u32();
        if (!memo.has(key)) fail(`GET of memo ${key}, which was never PUT`, at);
        stack.push(memo.get(key));
        break;
      }
      case 0x70: // PUT
        memo.set(Number(line()), top());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      default: {
        const name = OPCODE_NAMES[op] ?? `0x${op.toString(16).padStart(2, "0")}`;
        fail(`unsupported opcode ${name}: not something a checkpoint's state dict contains`, at);
      }
    }
    if (marks.length && marks[marks.length - 1] > stack.length) fail("the stack dropped below a MARK", at);
  }
}
