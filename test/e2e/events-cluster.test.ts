// Every api node serves GET /api/events: a console connected to one api node sees the updates of
// a job another node runs, a queue paused through the other api node, and a node leaving. Three
// OS processes over NATS and Postgres.
import { createCluster, type Cluster } from "../support/cluster";
import { describeWithServers, http, waitFor } from "../support/env";

describeWithServers(["DATABASE_URL", "NATS_URL"], "the event stream across nodes", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await createCluster();
  }, 60_000);
  afterAll(() => cluster?.cleanup(), 60_000);

  it("relays job progress, queue changes and nodes leaving to a console on another api node", async () => {
    // The api node says it is not ready until the other nodes have had time to learn of it. It
    // boots alone, so that the others' boots do not slow the polls past that 1.5 s window.
    const watched = await cluster.start("watched", { services: "api" });
    const answers: any[] = [];
    await waitFor(
      async () => {
        const res = await http(watched.api, "GET", "/api/ready").catch(() => null);
        if (res) answers.push(res.body);
        return res?.status === 200 ? true : undefined;
      },
      60_000,
      "the watched node to be ready",
    );
    expect(answers).toContainEqual({
      ready: false,
      checks: { database: "ok", transporter: "announcing this node's services to the cluster" },
    });
    const other = await cluster.start("other", { services: "api" });
    const worker = await cluster.start("worker", { services: "ingestor" });
    await cluster.waitForNodes(["watched", "other", "worker"]);

    const controller = new AbortController();
    const res = await fetch(`${watched.api}/api/events`, { signal: controller.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = "";
    // A timeout says what the stream had and what the jobs were, for the next reader of the log.
    const until = (what: string, test: (t: string) => boolean, timeoutMs = 60_000) =>
      waitFor(
        async () => {
          const { value } = await reader.read();
          text += new TextDecoder().decode(value);
          return test(text) ? true : undefined;
        },
        timeoutMs,
        what,
      ).catch(async (err: Error) => {
        const jobs = (await http(other.api, "GET", "/api/jobs?pageSize=5")).body;
        throw new Error(`${err.message}; the stream's last 600 characters: ${text.slice(-600)}; the jobs: ${JSON.stringify(jobs)}`);
      });
    try {
      // The other nodes send this node events once their registries know its listeners. This
      // node announces its services a second after it starts (Moleculer debounces the INFO
      // packet), and it may list the other nodes before they list it: the events of a job that
      // ran in between went nowhere, and never come. So small jobs go until one is seen to its end.
      await waitFor(
        async () => {
          const warmUp = await http(other.api, "POST", "/api/inserts", { rows: 10 });
          const ended = new RegExp(`"id":${warmUp.body.id},[^\\n]*"status":"succeeded"`);
          return until(`warm-up job ${warmUp.body.id}'s end on the stream`, (t) => ended.test(t), 5_000);
        },
        60_000,
        "a warm-up job's end on the stream",
      );
      const { body } = await http(other.api, "POST", "/api/inserts", { rows: 20_000 });
      await until("the job to succeed on the stream", (t) => new RegExp(`"id":${body.id},[^\\n]*"status":"succeeded"`).test(t));
      expect(text).toMatch(new RegExp(`event: jobs\\.updated\\ndata: \\{"id":${body.id},[^\\n]*"status":"running"`));
      expect((await http(other.api, "PATCH", "/api/queues/insert", { paused: true })).status).toBe(200);
      await until("the queue change on the stream", (t) => /event: queues\.changed\ndata: \{"name":"insert","paused":true/.test(t));
      // A clean stop says goodbye at once; a killed node is seen gone only after the heartbeat
      // timeout (15 s), which the dead-holders suite waits for.
      await worker.stop("SIGTERM");
      await until("the worker to leave", (t) =>
        /event: nodes\.changed\ndata: \{"nodeId":"[^"]*worker[^"]*","state":"disconnected"\}/.test(t),
      );
      await until("the limits' figures", (t) => /event: throttle\.stats\ndata: \{"resources":/.test(t));
    } finally {
      controller.abort();
      await http(other.api, "PATCH", "/api/queues/insert", { paused: false });
    }
  }, 180_000);
});
