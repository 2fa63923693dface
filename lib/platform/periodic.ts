// A task run every period, never two at a time: a run still going when the next is due lets
// that one pass. stop() clears the timer and waits for the run in progress.

export interface Periodic {
  stop(): Promise<void>;
}

/** Runs `task` every `periodMs` (and once at once with `now`); a failed run goes to `onError`, and the next period runs again. */
export function runEvery(
  periodMs: number,
  task: () => Promise<unknown>,
  onError: (err: unknown) => void,
  opts: { now?: boolean } = {},
): Periodic {
  let running: Promise<void> | null = null;
  const run = () => {
    running ??= task()
      .then(() => {}, onError)
      .finally(() => (running = null));
  };
  const timer = setInterval(run, periodMs);
  timer.unref();
  if (opts.now) run();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
