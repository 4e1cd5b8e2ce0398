// A bare node:http server with Express's types installed: the type argument
// says the callbacks get Node's request and response.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { rateLimit } from 'resilient-rate-limit';

const limiter = rateLimit<IncomingMessage, ServerResponse>({
  limit: 10,
  window: '1m',
  key: req => String(req.headers['x-api-key'] ?? req.socket.remoteAddress),
  handler: (_req, res) => {
    res.statusCode = 429;
    res.end('slow down');
  },
});
createServer((req, res) => {
  void limiter(req, res, error => {
    res.statusCode = error ? 500 : 200;
    res.end();
  });
});
