// What every service that talks to Postgres or an upstream mixes in: the process's cluster-wide
// limiters (lib/throttle/), one method away.
import type { ServiceSchema } from "moleculer";
import type { LimiterHub, LimitSpec, ResourceLimiter } from "../lib/throttle";

export interface ThrottleMethods {
  /** The cluster-wide limiter of `resource`, created with `spec` on first use. */
  limiterFor(resource: string, spec: LimitSpec): ResourceLimiter;
}

export function ThrottleMixin(rt: { limits: LimiterHub }): Partial<ServiceSchema> {
  return {
    methods: {
      limiterFor(resource: string, spec: LimitSpec) {
        return rt.limits.limiter(resource, spec);
      },
    },
  };
}
