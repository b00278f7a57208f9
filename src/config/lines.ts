/**
 * Finds the line of every key in a TOML document. smol-toml reports no positions for keys, so
 * the loader uses this map to point an error at the line at fault.
 *
 * Paths look like the loader's error keys: `max_qos`, `listener[1].port` (the second
 * [[listener]] table), `log_type[2]` (third element of an array value), `a.b` (dotted keys and
 * [a.b] headers). The document must already have parsed; the scanner assumes valid TOML and
 * only has to skip values (strings, multi-line strings, arrays, inline tables) correctly.
 */
export function keyLines(src: string): Map<string, number> {
  const found = new Map<string, number>();
  /** Element count of every array of tables, by its resolved path ("listener", "a[1].b"). */
  const arrays = new Map<string, number>();
  let pos = 0;
  let line = 1;

  const note = (path: string, at: number) => {
    if (path && !found.has(path)) found.set(path, at);
  };
  const join = (a: string, b: string) => (a ? `${a}.${b}` : b);
  const advance = (n: number) => {
    for (let k = 0; k < n && pos < src.length; k++) {
      if (src[pos] === "\n") line++;
      pos++;
    }
  };

  /** Skips spaces and tabs; with `newlines`, also line breaks and comments. */
  function skipBlank(newlines: boolean): void {
    while (pos < src.length) {
      const c = src[pos];
      if (c === " " || c === "\t") pos++;
      else if (newlines && (c === "\n" || c === "\r")) advance(1);
      else if (newlines && c === "#") {
        while (pos < src.length && src[pos] !== "\n") pos++;
      } else break;
    }
  }

  /** Reads a string starting at `pos` (any of the four kinds) and returns its text. */
  function readString(): string {
    const q = src[pos];
    const fence = q + q + q;
    if (src.startsWith(fence, pos)) {
      advance(3);
      const start = pos;
      while (pos < src.length) {
        if (q === '"' && src[pos] === "\\") advance(2);
        else if (src.startsWith(fence, pos)) {
          // Up to two quotes may end the content right before the closing fence.
          let end = pos + 3;
          while (src[end] === q && end - pos < 5) end++;
          const text = src.slice(start, end - 3);
          advance(end - pos);
          return text;
        } else advance(1);
      }
      return src.slice(start);
    }
    pos++;
    const start = pos;
    while (pos < src.length && src[pos] !== q && src[pos] !== "\n") {
      pos += q === '"' && src[pos] === "\\" ? 2 : 1;
    }
    const raw = src.slice(start, pos);
    if (src[pos] === q) pos++;
    if (q === "'") return raw;
    try {
      return JSON.parse(`"${raw}"`);
    } catch {
      return raw;
    }
  }

  /** Reads a dotted key (`a`, `"a b".c`, `'x'`) and returns its parts. */
  function readKey(): string[] {
    const parts: string[] = [];
    for (;;) {
      skipBlank(false);
      if (src[pos] === '"' || src[pos] === "'") parts.push(readString());
      else {
        const start = pos;
        while (pos < src.length && /[A-Za-z0-9_-]/.test(src[pos])) pos++;
        parts.push(src.slice(start, pos));
      }
      skipBlank(false);
      if (src[pos] !== ".") return parts;
      pos++;
    }
  }

  /** Skips one value, noting array elements and inline-table keys under `path`. */
  function readValue(path: string): void {
    skipBlank(false);
    const c = src[pos];
    if (c === '"' || c === "'") {
      readString();
    } else if (c === "[" || c === "{") {
      const close = c === "[" ? "]" : "}";
      pos++;
      for (let i = 0;; i++) {
        skipBlank(true);
        if (pos >= src.length) return;
        if (src[pos] === close) {
          pos++;
          return;
        }
        const before = pos;
        if (c === "[") {
          note(`${path}[${i}]`, line);
          readValue(`${path}[${i}]`);
        } else {
          readKeyValue(path);
        }
        skipBlank(true);
        if (src[pos] === ",") pos++;
        else if (pos === before) pos++; // never stall on text the scanner does not understand
      }
    } else {
      while (pos < src.length && !",]}#\r\n".includes(src[pos])) pos++;
    }
  }

  /** Reads `key = value` in the table at `base`. */
  function readKeyValue(base: string): void {
    const at = line;
    let path = base;
    for (const part of readKey()) {
      path = join(path, part);
      note(path, at);
    }
    skipBlank(false);
    if (src[pos] === "=") pos++;
    readValue(path);
  }

  let table = "";
  while (pos < src.length) {
    skipBlank(true);
    if (pos >= src.length) break;
    const before = pos;
    if (src[pos] === "[") {
      const at = line;
      const isArray = src[pos + 1] === "[";
      pos += isArray ? 2 : 1;
      const parts = readKey();
      let path = "";
      parts.forEach((part, k) => {
        path = join(path, part);
        if (isArray && k === parts.length - 1) {
          const n = arrays.get(path) ?? 0;
          arrays.set(path, n + 1);
          note(path, at);
          path += `[${n}]`;
        } else if (arrays.has(path)) {
          path += `[${arrays.get(path)! - 1}]`;
        }
        note(path, at);
      });
      skipBlank(false);
      pos += isArray ? 2 : 1;
      table = path;
    } else {
      readKeyValue(table);
    }
    if (pos === before) pos++;
  }
  return found;
}

/** The line of `key`, or of its nearest ancestor that has one ("a[1].b" → "a[1]" → "a"); 0 if none. */
export function lineOf(lines: Map<string, number>, key: string): number {
  for (let k = key; k;) {
    const at = lines.get(k);
    if (at) return at;
    const parent = k.replace(/(?:\[\d+\]|\.[^.[\]]*)$/, "");
    if (parent === k) break;
    k = parent;
  }
  return 0;
}
