// One service of a test, in JavaScript: @upstash/ratelimit's MultiRegionRatelimit over
// @upstash/redis clients, one per region (each a redkit gateway in front of that region's
// Redis). Reads its task from the environment, prints one JSON line of what it was answered.
//
//   RK_URLS="http://127.0.0.1:1,http://127.0.0.1:2" RK_TOKEN=... RK_ALGORITHM=fixed|sliding
//   RK_LIMIT=10 RK_WINDOW="1 h" RK_PREFIX=... RK_IDENTIFIER=... RK_CALLS=5
//   NODE_PATH=<the directory holding node_modules/@upstash> node multiregion.cjs
"use strict";
const { Redis } = require("@upstash/redis");
const { MultiRegionRatelimit } = require("@upstash/ratelimit");

async function main() {
  const env = process.env;
  const regions = env.RK_URLS.split(",").map(
    (url) => new Redis({ url, token: env.RK_TOKEN, enableTelemetry: false }),
  );
  const make = env.RK_ALGORITHM === "sliding"
    ? MultiRegionRatelimit.slidingWindow
    : MultiRegionRatelimit.fixedWindow;
  const limiter = new MultiRegionRatelimit({
    redis: regions,
    limiter: make(Number(env.RK_LIMIT), env.RK_WINDOW),
    prefix: env.RK_PREFIX,
    ephemeralCache: false,
    enableTelemetry: false,
  });
  const answers = [];
  for (let n = 0; n < Number(env.RK_CALLS); n++) {
    const result = await limiter.limit(env.RK_IDENTIFIER);
    await result.pending; // every region written and caught up before the next call
    answers.push({
      success: result.success,
      remaining: result.remaining,
      reset: result.reset,
      reason: result.reason ?? null,
    });
  }
  process.stdout.write(JSON.stringify(answers) + "\n");
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(1);
});
