// A minimal JSON API for the REST benchmarks: node's http module, nothing else.
// GET /items?page=N&per_page=M -> {"data": [...M records...], "total": T}, with X-Total-Count.
// LIMIT=R in the environment makes it answer 429 (Retry-After: 1) above R requests per second.
"use strict";
const http = require("http");
const port = Number(process.argv[2]);
const total = Number(process.argv[3] || 1000000);
const limit = Number(process.env.LIMIT || 0);
let window = [];
let served = 0, refused = 0, first = 0, last = 0;

function page(n, size) {
  const start = (n - 1) * size;
  const end = Math.min(start + size, total);
  const data = [];
  for (let id = start + 1; id <= end; id++) {
    data.push({ id, name: "item " + id, price: id * 1.25, updated_at: "2024-01-01T00:00:00", address: { city: "city " + (id % 7), zip: String(10000 + id) }, tags: ["t" + (id % 3)] });
  }
  return JSON.stringify({ data, total });
}

http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/stats") {
    res.writeHead(200, { "Content-Type": "application/json" });
    // the rate as the server saw it: between the first and the last answered request
    res.end(JSON.stringify({ served, refused, seconds: (last - first) / 1000, rate: (served - 1) / ((last - first) / 1000) }));
    return;
  }
  if (limit) {
    const now = Date.now();
    while (window.length && now - window[0] >= 1000) window.shift();
    if (window.length >= limit) {
      refused++;
      res.writeHead(429, { "Retry-After": "1", "Content-Type": "application/json" });
      res.end('{"error":"rate limited"}');
      return;
    }
    window.push(now);
  }
  served++;
  last = Date.now();
  if (!first) first = last;
  const body = page(Number(url.searchParams.get("page") || 1), Number(url.searchParams.get("per_page") || 100));
  res.writeHead(200, { "Content-Type": "application/json", "X-Total-Count": String(total), "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}).listen(port, "127.0.0.1");
