// Every route the gateway serves, and who may call each action: the one place a reader (and
// the route census test) finds the API's access policy. An action that is reachable through an
// alias but missing from ACTION_ACCESS stops the gateway at boot.
import type { Access } from "../lib/api/request-guard";

export const ACTION_ACCESS: Record<string, Access> = {
  "api.health": "public",
  // Anonymous callers get only { ready }; the checks' details need a token.
  "api.ready": "public",
  "api.events": "read",
  "api.nodes": "read",
  "api.whoami": "read",
  // The API's description and its page are reads like any other (docs/security.md): of the
  // actions, only health and readiness answer without a token. The static files (the console at
  // /, the docs page's shell at /docs/, /vendor/) are no actions and are public: they hold no data.
  "api.openapi": "read",
  "api.docs": "read",
  "crawls.create": "write",
  "crawls.list": "read",
  "crawls.get": "read",
  "crawls.cancel": "write",
  "pages.count": "read",
  "pages.list": "read",
  "pages.get": "read",
  "pages.fetches": "read",
  "inserts.create": "write",
  "inserts.sync": "write",
  "jobs.list": "read",
  "jobs.get": "read",
  "jobs.stop": "write",
  "jobAdmin.events": "read",
  "jobAdmin.retry": "write",
  "jobAdmin.retryMany": "write",
  "jobAdmin.remove": "write",
  "jobAdmin.removeOne": "write",
  "idTasks.minutes": "read",
  "queues.list": "read",
  "queues.update": "write",
  "crawls.update": "write",
  "crawls.failures": "read",
  "rows.count": "read",
  "rows.list": "read",
  "rows.clear": "write",
  "users.list": "read",
  "users.get": "read",
  "users.create": "write",
  "users.update": "write",
  "throttle.cluster": "read",
  "throttle.set": "write",
  "backlog.get": "read",
  "idTasks.create": "write",
  "idTasks.list": "read",
  "idTasks.get": "read",
  "idTasks.update": "write",
  "idTasks.slots": "read",
  "imports.create": "write",
  "imports.get": "read",
  "imports.list": "read",
  "schedules.create": "write",
  "schedules.list": "read",
  "schedules.get": "read",
  "schedules.update": "write",
  "schedules.remove": "write",
};

// 1,000,000 ids of up to 16 digits, with commas and some room.
export const ID_TASK_BODY_LIMIT_BYTES = 20 * 1024 * 1024;

// The users API, under /api and under the seed's path (/users/).
const USER_ALIASES = {
  "GET users": "users.list",
  "POST users": "users.create",
  "GET users/:id": "users.get",
  "PUT users/:id": "users.update",
  "PATCH users/:id": "users.update",
};

export interface RouteSpec {
  path: string;
  aliases: Record<string, string>;
  /** The largest JSON body the route reads. */
  bodyLimitBytes: number;
  /** The seed's routes take numbers in the path (`/insert/500`). */
  numericPathParams?: boolean;
}

export function routeSpecs(bodyLimitBytes: number): RouteSpec[] {
  // Id-tasks have their own body limit (a task may hold 1,000,000 ids), under /api and under
  // the seed's path.
  const idTasks = (path: string): RouteSpec => ({
    path,
    bodyLimitBytes: ID_TASK_BODY_LIMIT_BYTES,
    aliases: {
      "POST /": "idTasks.create",
      "GET /": "idTasks.list",
      "GET /:id": "idTasks.get",
      "PUT /:id": "idTasks.update",
      "PATCH /:id": "idTasks.update",
      "GET /:id/slots": "idTasks.slots",
      "GET /:id/minutes": "idTasks.minutes",
    },
  });
  return [
    idTasks("/api/id-tasks"),
    idTasks("/celery_ids_tasks"),
    {
      path: "/api",
      bodyLimitBytes,
      aliases: {
        "POST crawls": "crawls.create",
        "GET crawls": "crawls.list",
        "GET crawls/:id": "crawls.get",
        "PATCH crawls/:id": "crawls.update",
        "GET crawls/:id/failures": "crawls.failures",
        "DELETE crawls/:id": "crawls.cancel",
        // Before pages/:id, so "count" is not taken for an id.
        "GET pages/count": "pages.count",
        "GET pages": "pages.list",
        "GET pages/:id": "pages.get",
        "GET pages/:id/fetches": "pages.fetches",
        "POST inserts": "inserts.create",
        "POST inserts/sync": "inserts.sync",
        // A file body is streamed by the request guard (services/import-upload.ts); JSON (a URL import) reaches the action.
        "POST imports": "imports.create",
        "GET imports": "imports.list",
        "GET imports/:id": "imports.get",
        "POST schedules": "schedules.create",
        "GET schedules": "schedules.list",
        "GET schedules/:id": "schedules.get",
        "PATCH schedules/:id": "schedules.update",
        "DELETE schedules/:id": "schedules.remove",
        "GET jobs": "jobs.list",
        "DELETE jobs": "jobAdmin.remove",
        // Before jobs/:id/…, so "retry" is not taken for an id.
        "POST jobs/retry": "jobAdmin.retryMany",
        "GET jobs/:id": "jobs.get",
        "GET jobs/:id/events": "jobAdmin.events",
        "POST jobs/:id/stop": "jobs.stop",
        "POST jobs/:id/retry": "jobAdmin.retry",
        "DELETE jobs/:id": "jobAdmin.removeOne",
        "GET queues": "queues.list",
        "PATCH queues/:name": "queues.update",
        "GET events": "api.events",
        "GET nodes": "api.nodes",
        "GET whoami": "api.whoami",
        "GET openapi.json": "api.openapi",
        "GET docs": "api.docs",
        // Before rows/:id would be; rows has no per-row route.
        "GET rows/count": "rows.count",
        "GET rows": "rows.list",
        "DELETE rows": "rows.clear",
        ...USER_ALIASES,
        "GET throttle": "throttle.cluster",
        "GET backlog": "backlog.get",
        "PATCH throttle": "throttle.set",
        "GET health": "api.health",
        "GET ready": "api.ready",
      },
    },
    {
      // The seed Flask app's routes, with the same meaning, so its users switch by changing a
      // host name. The GETs that change things are writes like any other.
      path: "",
      bodyLimitBytes,
      numericPathParams: true,
      aliases: {
        "GET insert{/:rows}": "inserts.create",
        "GET dpd_insert{/:rows}": "inserts.sync",
        "GET status/:id": "jobs.get",
        "GET stop/:id": "jobs.stop",
        "GET get_data/count": "rows.count",
        "GET get_data": "rows.list",
        "GET delete_all": "rows.clear",
        ...USER_ALIASES,
      },
    },
  ];
}
