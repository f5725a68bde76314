import type { Member } from './types';

/**
 * Ring points per unit of weight. 100 keeps each member's share of the keys within about
 * ±10 % of its weight's share, while a ring of a few targets stays a few kilobytes.
 */
export const POINTS_PER_WEIGHT = 100;

/**
 * Cap on a ring's total points (64 Ki: 512 KiB of typed arrays, 16 steps of binary search).
 * Above it every member's points are scaled down in proportion (at least 1 point each), so
 * large pools with large weights do not make a ring of millions of points. Below the cap a
 * member's points depend only on its URL and weight, so adding or removing one target moves
 * only the keys of that target.
 */
export const MAX_RING_POINTS = 65_536;

/**
 * A 32-bit hash of a string: FNV-1a over its UTF-16 code units (both bytes of each), then
 * murmur3's fmix32 finaliser. FNV-1a alone mixes the last characters poorly (and ring points
 * differ only in their last characters); the finaliser spreads them over all 32 bits.
 */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    h = Math.imul(h ^ (unit & 0xff), 0x01000193);
    if (unit > 0xff) h = Math.imul(h ^ (unit >>> 8), 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A consistent-hash ring over members: sorted points (`Uint32Array`) and the position (in the
 * list it was built from, i.e. `member.index`) of the member owning each. Built at creation and on each member-list change, never per request.
 */
export class HashRing {
  private points = new Uint32Array(0);
  private owners = new Uint32Array(0);
  /** Per member: the walk that last visited it (so a walk checks each member once). */
  private seen = new Uint32Array(0);
  private walk = 0;
  /** Members with at least one point: a walk stops after checking them all. */
  private owned = 0;

  constructor(members: readonly Member[]) {
    this.build(members);
  }

  /** The number of points on the ring. */
  get size(): number {
    return this.points.length;
  }

  /** Rebuilds the ring for a new member list (weight-0 members get no points). */
  build(members: readonly Member[]): void {
    let totalWeight = 0;
    for (const member of members) if (member.weight > 0) totalWeight += member.weight;
    const wanted = totalWeight * POINTS_PER_WEIGHT;
    const scale = wanted > MAX_RING_POINTS ? MAX_RING_POINTS / wanted : 1;
    const hashes: number[] = [];
    const owners: number[] = [];
    this.owned = 0;
    for (let j = 0; j < members.length; j++) {
      const member = members[j]!;
      if (!(member.weight > 0)) continue;
      this.owned++;
      const count = Math.max(1, Math.floor(member.weight * POINTS_PER_WEIGHT * scale));
      const url = member.target.url;
      for (let i = 0; i < count; i++) {
        hashes.push(hash32(`${url}#${i}`));
        owners.push(j);
      }
    }
    // Sort by point; a collision is settled by URL so it does not depend on list order.
    const order = hashes.map((_, i) => i);
    order.sort((a, b) => {
      const d = hashes[a]! - hashes[b]!;
      if (d !== 0) return d;
      const ua = members[owners[a]!]!.target.url;
      const ub = members[owners[b]!]!.target.url;
      return ua < ub ? -1 : ua > ub ? 1 : 0;
    });
    this.points = new Uint32Array(order.length);
    this.owners = new Uint32Array(order.length);
    for (let i = 0; i < order.length; i++) {
      this.points[i] = hashes[order[i]!]!;
      this.owners[i] = owners[order[i]!]!;
    }
    this.seen = new Uint32Array(members.length);
    this.walk = 0;
  }

  /**
   * The member owning the first point at or after `hash` (clockwise, wrapping) for which
   * `usable` is true; each member is checked at most once and the walk is bounded by the
   * ring's size. Undefined when the ring is empty or no member on it is usable.
   */
  pick(
    members: readonly Member[],
    usable: (member: Member) => boolean,
    hash: number,
  ): Member | undefined {
    const points = this.points;
    const n = points.length;
    if (n === 0) return undefined;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    let pos = lo === n ? 0 : lo;
    if (this.walk === 0xffffffff) {
      this.seen.fill(0);
      this.walk = 0;
    }
    const walk = ++this.walk;
    let checked = 0;
    for (let step = 0; step < n && checked < this.owned; step++) {
      const owner = this.owners[pos]!;
      if (this.seen[owner] !== walk) {
        this.seen[owner] = walk;
        checked++;
        const member = members[owner];
        if (member !== undefined && usable(member)) return member;
      }
      pos = pos + 1 === n ? 0 : pos + 1;
    }
    return undefined;
  }
}
