/**
 * A latency histogram in microseconds: exact below 2,048 µs, then 1,024 buckets per power of two
 * (0.1 % resolution) up to 2^32 µs. Recording is a few integer operations; histograms from
 * several workers merge by adding counts, and travel as sparse [bucket, count] pairs.
 */

const LINEAR = 2048;
const SUB_BITS = 10;
const SUB = 1 << SUB_BITS;
const BUCKETS = LINEAR + (32 - 11) * SUB;

export class Histogram {
  readonly counts = new Float64Array(BUCKETS);
  total = 0;
  max = 0;

  /** Record one value in microseconds (negative values count as 0). */
  record(us: number): void {
    let v = us > 0 ? Math.floor(us) : 0;
    if (v > 0xffffffff) v = 0xffffffff;
    if (v > this.max) this.max = v;
    this.counts[bucketOf(v)]++;
    this.total++;
  }

  /** The value at quantile q (0..1), in microseconds (the bucket's lower bound); 0 when empty. */
  quantile(q: number): number {
    if (this.total === 0) return 0;
    const want = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    const c = this.counts;
    for (let i = 0; i < c.length; i++) {
      seen += c[i];
      if (seen >= want) return Math.min(lowerBound(i), this.max);
    }
    return this.max;
  }

  /** Sparse form for JSON: [bucket, count, bucket, count, ...]. */
  toSparse(): number[] {
    const out: number[] = [];
    const c = this.counts;
    for (let i = 0; i < c.length; i++) if (c[i]) out.push(i, c[i]);
    return out;
  }

  /** Add a sparse histogram (from `toSparse`) with its maximum. */
  addSparse(sparse: number[], max: number): void {
    for (let i = 0; i < sparse.length; i += 2) {
      this.counts[sparse[i]] += sparse[i + 1];
      this.total += sparse[i + 1];
    }
    if (max > this.max) this.max = max;
  }
}

function bucketOf(v: number): number {
  if (v < LINEAR) return v;
  const e = 31 - Math.clz32(v); // v >= 2^11, so e >= 11
  return LINEAR + (e - 11) * SUB + ((v >>> (e - SUB_BITS)) & (SUB - 1));
}

function lowerBound(i: number): number {
  if (i < LINEAR) return i;
  const k = i - LINEAR;
  const e = 11 + Math.floor(k / SUB);
  const sub = k % SUB;
  return 2 ** e + sub * 2 ** (e - SUB_BITS);
}
