import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { RedisProcess } from './redis-process.js';

/** A throwaway CA and a server certificate it signed, for localhost and 127.0.0.1. */
export type TestCertificates = {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** PEM of the CA that signed the server certificate. */
  ca: string;
  /** PEM of a second CA that signed nothing the server presents. */
  otherCa: string;
  /** Removes the directory. */
  remove(): void;
};

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function makeCa(dir: string, name: string): void {
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
  );
}

/** Makes the certificates with `openssl` (elliptic-curve keys: fast to generate). */
export function makeCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'rrl-tls-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  openssl(
    dir,
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=localhost',
  );
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.crt',
    '-days',
    '2',
    '-extfile',
    'san.ext',
  );
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    certFile: join(dir, 'server.crt'),
    keyFile: join(dir, 'server.key'),
    ca: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    otherCa: readFileSync(join(dir, 'other-ca.crt'), 'utf8'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * A redis-server that speaks TLS on `tlsPort` (no client certificates
 * required) and plain TCP on `redis.port`, which the test helpers use for
 * readiness and admin commands.
 */
export type TlsRedis = {
  redis: RedisProcess;
  tlsPort: number;
  certs: TestCertificates;
  stop(): Promise<void>;
};

export async function startTlsRedis(extraArgs: string[] = []): Promise<TlsRedis> {
  const certs = makeCertificates();
  const tlsPort = await freePort();
  try {
    const redis = await RedisProcess.start({
      args: [
        '--tls-port',
        String(tlsPort),
        '--tls-cert-file',
        certs.certFile,
        '--tls-key-file',
        certs.keyFile,
        '--tls-ca-cert-file',
        certs.caFile,
        '--tls-auth-clients',
        'no',
        ...extraArgs,
      ],
    });
    return {
      redis,
      tlsPort,
      certs,
      stop: async () => {
        await redis.stop();
        certs.remove();
      },
    };
  } catch (error) {
    certs.remove();
    throw error;
  }
}
