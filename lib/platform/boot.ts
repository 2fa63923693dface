// Where this process's boot is. The api service starts at once, so /api/health answers and
// /api/ready says what boot waits for; every other service starts once the schema is migrated
// (the gate below holds their `started` back).
import type { BootStatus } from "../contracts";

export class Boot {
  readonly status: BootStatus = { state: "starting services", since: new Date().toISOString() };
  private done: Promise<void> = Promise.resolve();

  enter(state: BootStatus["state"]): void {
    Object.assign(this.status, { state, since: new Date().toISOString() });
  }

  /** Runs the steps every service but the api waits for; a failure shows as "failed". */
  run(steps: () => Promise<void>): Promise<void> {
    this.done = steps();
    // The gate's waiters see the failure; this keeps it from also counting as unhandled.
    this.done.catch(() => this.enter("failed"));
    return this.done;
  }

  /** The broker middleware that holds every service but the api (and $internals) until boot is done. */
  gate() {
    return {
      name: "BootGate",
      serviceStarting: async (service: { name: string }) => {
        if (service.name !== "api" && !service.name.startsWith("$")) await this.done;
      },
    };
  }
}
