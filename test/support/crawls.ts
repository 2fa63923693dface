// A crawl as the integration tests run one: started through the API, awaited to its end.
import { waitUntilFinished } from "../../fixtures/api-client";
import type { Sluice } from "../../runtime";
import type { CrawlView } from "../../services/crawls.service";
import { http } from "./env";

/** Starts a crawl of `body` on `sluice` (answered 202) and answers it once it has finished. */
export async function crawlToEnd(sluice: Sluice, body: object, timeoutMs = 60_000): Promise<CrawlView> {
  const created = await http(sluice.apiUrl!, "POST", "/api/crawls", body);
  expect(created.status).toBe(202);
  return waitUntilFinished(sluice.apiUrl!, `/api/crawls/${created.body.id}`, timeoutMs, `crawl ${created.body.id} to finish`);
}
