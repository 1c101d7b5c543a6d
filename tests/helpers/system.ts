/** What a process holds (Linux /proc, V8's heap): for tests that check resources come back. */

/** Open file descriptors of a process (Linux /proc). */
export function openFiles(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/**
 * This process's live JavaScript memory (heap in use + external buffers) after a full collection, in KiB. The
 * test task runs with --expose-gc for it.
 */
export function liveMemoryKiB(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with --v8-flags=--expose-gc (deno task test does)");
  gc();
  gc();
  const usage = Deno.memoryUsage();
  return (usage.heapUsed + usage.external) >> 10;
}
