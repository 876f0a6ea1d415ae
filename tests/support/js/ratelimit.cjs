// One service of a test, in JavaScript: @upstash/ratelimit's Ratelimit over one
// @upstash/redis client (a redkit gateway in front of the test's Redis). Runs the actions it
// is given and prints one JSON line: what each was answered.
//
//   RK_URL=http://127.0.0.1:1 RK_TOKEN=... RK_PREFIX=... RK_IDENTIFIER=...
//   RK_LIMITER='["fixedWindow", 10, "1 h"]'   (the static constructor and its arguments)
//   RK_ACTIONS='["limit", "limit", "remaining", "reset"]'  RK_ANALYTICS=1 (optional)
//   NODE_PATH=<the directory holding node_modules/@upstash> node ratelimit.cjs
"use strict";
const { Redis } = require("@upstash/redis");
const { Ratelimit } = require("@upstash/ratelimit");

async function main() {
  const env = process.env;
  const redis = new Redis({ url: env.RK_URL, token: env.RK_TOKEN, enableTelemetry: false });
  const [kind, ...args] = JSON.parse(env.RK_LIMITER);
  const limiter = new Ratelimit({
    redis,
    limiter: Ratelimit[kind](...args),
    prefix: env.RK_PREFIX,
    ephemeralCache: false,
    analytics: env.RK_ANALYTICS === "1",
    enableTelemetry: false,
  });
  const answers = [];
  for (const action of JSON.parse(env.RK_ACTIONS)) {
    if (action === "limit") {
      const result = await limiter.limit(env.RK_IDENTIFIER);
      await result.pending; // analytics written before the next action
      answers.push({ success: result.success, remaining: result.remaining, reset: result.reset });
    } else if (action === "remaining") {
      answers.push(await limiter.getRemaining(env.RK_IDENTIFIER));
    } else if (action === "reset") {
      await limiter.resetUsedTokens(env.RK_IDENTIFIER);
      answers.push(null);
    } else {
      throw new Error(`unknown action ${action}`);
    }
  }
  process.stdout.write(JSON.stringify(answers) + "\n");
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(1);
});
