// An app without Express's types: the callbacks get Node's request and
// response, and the package's types still compile.
import { createServer } from 'node:http';
import { rateLimit } from 'resilient-rate-limit';

const limiter = rateLimit({
  limit: 10,
  window: '1m',
  key: req => String(req.headers['x-api-key'] ?? req.socket.remoteAddress),
  handler: (_req, res) => {
    res.statusCode = 429;
    res.end('slow down');
  },
});
rateLimit({
  limit: 1,
  window: '1s',
  // @ts-expect-error IncomingMessage has no `ip`: Express's Request is not assumed
  key: req => req.ip ?? '',
});
createServer((req, res) => {
  void limiter(req, res, () => res.end());
});
