import { createServer } from 'node:net';

/**
 * Asks the OS for an unused TCP port on 127.0.0.1. The port is released before
 * returning, so another process can still grab it; callers that bind it later
 * must be ready to retry on EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error(`unexpected server address: ${String(address)}`));
        return;
      }
      const { port } = address;
      server.close(err => (err ? reject(err) : resolve(port)));
    });
  });
}
