/**
 * Which sequence numbers of one origin node this node has taken already: the highest one and a
 * window of bits below it. A message arrives once per matching NATS subscription of this node,
 * and a QoS 1/2 message whose JetStream store failed (no stream leader during an election, a
 * lost connection) is published again with its number, possibly after later ones got through.
 * So a copy is recognised by its own number, not by being behind the highest: a number not seen
 * in the window is taken even when it comes late, a number seen is not taken twice. A number
 * older than the window cannot be told apart and is taken (at least once).
 */
import { FABRIC_SEQ } from "../broker/message.ts";

/** Numbers remembered below the highest (a power of two dividing FABRIC_SEQ): 32 KB. */
export const SEEN_WINDOW = 1 << 18;
const MASK = SEEN_WINDOW - 1;

/** The sequence numbers seen from one origin. */
export class SeenSequences {
  readonly #bits = new Uint32Array(SEEN_WINDOW / 32);
  #last = -1;

  /** True when `seq` was not seen before (it is marked seen now); false for a copy. */
  first(seq: number): boolean {
    if (this.#last < 0) {
      this.#last = seq;
      this.#mark(seq);
      return true;
    }
    const ahead = (seq - this.#last + FABRIC_SEQ) % FABRIC_SEQ;
    if (ahead === 0) return false;
    if (ahead < FABRIC_SEQ / 2) {
      // The numbers skipped on the way have not been seen (yet).
      this.#clear(this.#last + 1, ahead);
      this.#last = seq;
      this.#mark(seq);
      return true;
    }
    if (FABRIC_SEQ - ahead >= SEEN_WINDOW) return true;
    const i = seq & MASK;
    if (this.#bits[i >>> 5] & (1 << (i & 31))) return false;
    this.#mark(seq);
    return true;
  }

  #mark(seq: number): void {
    const i = seq & MASK;
    this.#bits[i >>> 5] |= 1 << (i & 31);
  }

  /** Clears `count` bits from number `from` on (wrapping), a word at a time where it can. */
  #clear(from: number, count: number): void {
    if (count >= SEEN_WINDOW) {
      this.#bits.fill(0);
      return;
    }
    let i = from & MASK;
    while (count > 0) {
      if ((i & 31) === 0 && count >= 32) {
        this.#bits[i >>> 5] = 0;
        i = (i + 32) & MASK;
        count -= 32;
      } else {
        this.#bits[i >>> 5] &= ~(1 << (i & 31));
        i = (i + 1) & MASK;
        count--;
      }
    }
  }
}
