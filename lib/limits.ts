/**
 * Per-address counts with a bound, for --max-sessions-per-ip and --max-handshakes-per-ip: a map of addresses to
 * how many they hold now, an entry removed when it drops to zero (so its size is the number of addresses that
 * hold something, never a history of every client seen).
 *
 * @module
 */

export class AddressCounter {
  readonly #counts = new Map<string, number>();
  #total = 0;

  /** `limit`: the most one address may hold; 0: no limit. */
  constructor(readonly limit: number) {}

  /** Counts one more for `address` and returns true, or returns false (and counts nothing) at the limit. */
  tryEnter(address: string): boolean {
    const count = this.#counts.get(address) ?? 0;
    if (this.limit > 0 && count >= this.limit) return false;
    this.#counts.set(address, count + 1);
    this.#total++;
    return true;
  }

  /** Counts one less for `address` (after a successful tryEnter). */
  leave(address: string): void {
    const count = this.#counts.get(address);
    if (count === undefined) return;
    this.#total--;
    if (count <= 1) this.#counts.delete(address);
    else this.#counts.set(address, count - 1);
  }

  /** What every address holds together. */
  get total(): number {
    return this.#total;
  }

  /** How many addresses hold something. */
  get addresses(): number {
    return this.#counts.size;
  }
}
