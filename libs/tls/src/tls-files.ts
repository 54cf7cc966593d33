/**
 * The three PEM files a process of the cluster holds (TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE),
 * read once at start: a missing or unreadable file is a configuration error, not a failed handshake
 * later.
 */
import { readFileSync } from 'node:fs';

export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export class TlsFileError extends Error {}

function readPem(file: string, what: string, marker: string): Buffer {
  let content: Buffer;
  try {
    content = readFileSync(file);
  } catch (err) {
    throw new TlsFileError(`${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (!content.includes(marker)) throw new TlsFileError(`${what} ${file} holds no ${marker.replace(/-/g, '').trim()}`);
  return content;
}

export function readTlsMaterial(files: TlsFiles): TlsMaterial {
  return {
    ca: readPem(files.ca, 'CA certificate', '-----BEGIN CERTIFICATE-----'),
    cert: readPem(files.cert, 'certificate', '-----BEGIN CERTIFICATE-----'),
    key: readPem(files.key, 'private key', 'PRIVATE KEY-----'),
  };
}
