# The Scrapy side of `npm run bench:crawl:nginx` (bench/crawl-nginx.ts): a minimal spider that
# follows same-site links from one root and stores nothing. Run as
#
#   python3 -m scrapy runspider bench/scrapy_spider.py -a root=http://127.0.0.1:PORT/index.html \
#     -a stats_file=/tmp/stats.json -s CONCURRENT_REQUESTS=16 -s CONCURRENT_REQUESTS_PER_DOMAIN=16
#
# The bench passes the concurrency with -s; everything else is fixed here. When it closes, the
# spider writes Scrapy's stats (plus bench/pages, the HTML pages it parsed) to stats_file as JSON.
import json
from urllib.parse import urlsplit

import scrapy
from scrapy.http import HtmlResponse


class SameSiteSpider(scrapy.Spider):
    name = "bench_same_site"
    custom_settings = {
        "ROBOTSTXT_OBEY": True,  # as Sluice does
        "LOG_LEVEL": "INFO",
        "AUTOTHROTTLE_ENABLED": False,
        "DOWNLOAD_DELAY": 0,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        "HTTPCACHE_ENABLED": False,
        "DEPTH_LIMIT": 0,
        # The value Scrapy will default to; leaving it unset only logs a deprecation warning.
        "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
    }

    def __init__(self, root, stats_file, **kwargs):
        super().__init__(**kwargs)
        self.root = root
        self.stats_file = stats_file
        self.origin = urlsplit(root)[:2]

    def start_requests(self):
        # Through the duplicate filter, unlike start_urls: the root is fetched once, as by Sluice.
        yield scrapy.Request(self.root, callback=self.parse)

    def parse(self, response):
        if not isinstance(response, HtmlResponse):
            return
        self.crawler.stats.inc_value("bench/pages")
        for href in response.css("a::attr(href), area::attr(href)").getall():
            url = response.urljoin(href)
            if urlsplit(url)[:2] == self.origin:
                yield scrapy.Request(url, callback=self.parse)

    def closed(self, reason):
        stats = {**self.crawler.stats.get_stats(), "finish_reason": reason}
        with open(self.stats_file, "w", encoding="utf-8") as out:
            json.dump(stats, out, default=str)  # start_time and finish_time are datetimes
