/**
 * The broker's two per-client tables, built for memory per idle connection. In JavaScriptCore
 * (Bun) every Map or Set entry is a heap cell of its own: measured with `bun:jsc` heapStats over
 * 20,000 entries, a `Map<string, object>` entry costs about 170 bytes and a `Set<object>` entry
 * about 130, against about 45 for a property of a dictionary object and 8 for an array slot.
 * Holding one entry in each for every client was a sixth of Midge's memory per idle connection
 * (bench/README.md).
 */

/** Something the connection list can hold: it keeps its own place in the list. */
export interface Listed {
  /** Index in its ConnectionList, -1 when not in one. */
  slot: number;
}

/**
 * The open connections: an array in which each connection knows its index, so adding and
 * removing are O(1) (removal moves the last connection into the gap).
 */
export class ConnectionList<T extends Listed> implements Iterable<T> {
  #items: T[] = [];

  get size(): number {
    return this.#items.length;
  }

  add(c: T): void {
    if (c.slot >= 0 && this.#items[c.slot] === c) return;
    c.slot = this.#items.length;
    this.#items.push(c);
  }

  /** Remove `c`; false when it was not in the list. */
  delete(c: T): boolean {
    const i = c.slot;
    if (i < 0 || this.#items[i] !== c) return false;
    const last = this.#items.pop()!;
    if (last !== c) {
      this.#items[i] = last;
      last.slot = i;
    }
    c.slot = -1;
    return true;
  }

  /**
   * Newest first. Removing the connection being visited (a sweep closing it) is safe: the one
   * moved into its place was visited already.
   */
  *[Symbol.iterator](): Iterator<T> {
    const items = this.#items;
    for (let i = items.length - 1; i >= 0; i--) {
      if (i < items.length) yield items[i];
    }
  }
}

/**
 * Sessions by client id: the part of a Map's interface the broker uses, over a prototype-less
 * dictionary object. Any string
 * is a safe key ("__proto__" included: without a prototype there is no setter behind it).
 */
export class SessionTable<V> {
  #byId: Record<string, V> = Object.create(null);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(id: string): V | undefined {
    return this.#byId[id];
  }

  has(id: string): boolean {
    return this.#byId[id] !== undefined;
  }

  set(id: string, v: V): this {
    if (this.#byId[id] === undefined) this.#size++;
    this.#byId[id] = v;
    return this;
  }

  delete(id: string): boolean {
    if (this.#byId[id] === undefined) return false;
    delete this.#byId[id];
    this.#size--;
    return true;
  }

  /** Every value; entries deleted during the walk and not yet visited are skipped. */
  *values(): IterableIterator<V> {
    const byId = this.#byId;
    for (const id in byId) {
      const v = byId[id];
      if (v !== undefined) yield v;
    }
  }
}
