/**
 * TLS on a connection that was already accepted and sniffed (its first bytes are in hand): node:tls runs the
 * server side over a Duplex that first replays the sniffed bytes, then reads the `Deno.Conn`; the result is
 * adapted back to the `ByteStream` the HTTP and WebSocket code uses, with backpressure both ways.
 *
 * What Deno 2.9.6's node:tls honours, as measured: `minVersion` yes; `ciphers` no (ignored silently, so the
 * command line refuses --ssl-ciphers); `requestCert` refuses a client without a certificate but accepts an
 * untrusted one, so client chains are verified here, against the CA file: names, signatures and dates with
 * node:crypto, the issuers' CA rights (basicConstraints, pathLenConstraint, keyUsage) decoded with
 * @peculiar/asn1-x509.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  BasicConstraints,
  Certificate,
  id_ce_basicConstraints,
  id_ce_keyUsage,
  KeyUsage,
  type KeyUsageType,
  Version,
} from "@peculiar/asn1-x509";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { type ByteStream, closeQuietly, writeAll } from "./io.ts";
import { NodeSocketStream, ReadGate } from "./nodesocket.ts";
import type { ServerTls } from "./settings.ts";

/** The TLS side of the settings, as the command line decides it (`--ssl-only` is the server's business). */
export type TlsOptions = Omit<ServerTls, "only">;

/** The system CA bundle on Debian and most Linux distributions. */
export const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/** TLS handshake failed or the client certificate was refused. */
export class TlsError extends Error {
  override name = "TlsError";
}

interface Credentials {
  cert: string;
  key: string;
  /** The CA certificates for client certificates; present exactly when clients are verified. */
  ca: string[] | undefined;
}

/** Splits a PEM bundle into its certificates. */
export function pemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----/;

/**
 * Reads certificate, key and CA files. Called for every connection (they are small), so a certificate renewed on
 * disk is used without a restart; a passphrase-protected key is decrypted here.
 */
export async function loadCredentials(options: TlsOptions): Promise<Credentials> {
  const certText = await Deno.readTextFile(options.cert);
  const keyText = options.key ? await Deno.readTextFile(options.key) : certText;
  const keyPem = keyText.match(PRIVATE_KEY)?.[0];
  if (!keyPem) throw new TlsError(`no private key in '${options.key ?? options.cert}'`);
  let key = keyPem;
  if (/ENCRYPTED/.test(keyPem) || options.keyPassword !== undefined) {
    try {
      key = createPrivateKey({ key: keyPem, passphrase: options.keyPassword ?? "" })
        .export({ type: "pkcs8", format: "pem" }).toString();
    } catch (error) {
      throw new TlsError(
        `cannot read the private key (wrong --key-password?): ${(error as Error).message}`,
      );
    }
  }
  const cert = pemCertificates(certText).join("\n");
  if (!cert) throw new TlsError(`no certificate in '${options.cert}'`);
  const ca = options.verifyClient
    ? pemCertificates(await Deno.readTextFile(options.cafile ?? SYSTEM_CA_BUNDLE))
    : undefined;
  return { cert, key, ca };
}

/**
 * The startup check of the server certificate, beyond what loading it checks: the private key must belong to the
 * (first) certificate, else every handshake would fail. Throws TlsError.
 */
export async function checkServerCertificate(options: TlsOptions): Promise<void> {
  const credentials = await loadCredentials(options);
  const keyFile = options.key ?? options.cert;
  let matches: boolean;
  try {
    const leaf = new X509Certificate(pemCertificates(credentials.cert)[0]);
    matches = leaf.checkPrivateKey(createPrivateKey(credentials.key));
  } catch (error) {
    throw new TlsError(
      `cannot compare the certificate in '${options.cert}' with the private key in '${keyFile}': ` +
        (error as Error).message,
    );
  }
  if (!matches) {
    throw new TlsError(
      `the private key in '${keyFile}' does not belong to the certificate in '${options.cert}'`,
    );
  }
}

/**
 * What startup says about the certificate besides the banner (logged with it, so it also reaches --log-file and
 * --syslog): a missing file turns TLS (wss://) off, which is allowed, as in Python; a `--cert` the user gave is a
 * warning, the default `self.pem` missing only an info line. A certificate outside its validity period is a
 * warning (it still serves: it may be renewed on disk before clients come).
 */
export function certificateNotices(
  options: TlsOptions,
  now = new Date(),
): { level: "warning" | "info"; message: string }[] {
  let missing: string | undefined;
  try {
    if (!Deno.statSync(options.cert).isFile) missing = "not a file";
  } catch {
    missing = "not found";
  }
  if (missing) {
    return options.certGiven
      ? [{
        level: "warning",
        message: `warning: --cert '${options.cert}' ${missing}: TLS (wss://) is off`,
      }]
      : [{
        level: "info",
        message:
          `no certificate: '${options.cert}' (the default --cert) ${missing}: TLS (wss://) is off`,
      }];
  }
  let text: string;
  try {
    text = Deno.readTextFileSync(options.cert);
  } catch {
    return []; // unreadable: startup refused it already
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(pemCertificates(text)[0]);
  } catch {
    return []; // undecodable: startup refused it already
  }
  const expiry = `the certificate '${options.cert}'`;
  if (now < new Date(leaf.validFrom)) {
    return [{
      level: "warning",
      message:
        `warning: ${expiry} is not valid yet (from ${leaf.validFrom}): TLS clients will refuse it`,
    }];
  }
  if (now > new Date(leaf.validTo)) {
    return [{
      level: "warning",
      message: `warning: ${expiry} expired on ${leaf.validTo}: TLS clients will refuse it`,
    }];
  }
  return [];
}

/** What a certificate's extensions say about its right to issue certificates (RFC 5280 4.2.1.3, 4.2.1.9). */
export interface IssuerRights {
  /** basicConstraints is present. */
  hasBasicConstraints: boolean;
  /** basicConstraints cA. */
  ca: boolean;
  /** basicConstraints pathLenConstraint: how many non-self-issued intermediate CAs may follow. */
  pathLen: number | undefined;
  /** keyUsage, if present. */
  keyUsage: KeyUsageType[] | undefined;
  /** An X.509 v1 certificate (no extensions at all). */
  v1: boolean;
}

/**
 * Decoded rights by certificate fingerprint. The same CAs and intermediates come with every connection, and
 * decoding one certificate takes about 0.75 ms (measured), several times a signature check; bounded.
 */
const rightsCache = new Map<string, Readonly<IssuerRights>>();
const RIGHTS_CACHE_SIZE = 256;

/** Decodes the extensions that decide whether `cert` may issue certificates. Throws TlsError if unreadable. */
export function issuerRights(cert: X509Certificate): Readonly<IssuerRights> {
  const key = cert.fingerprint256;
  const known = rightsCache.get(key);
  if (known) return known;
  const rights = Object.freeze(decodeIssuerRights(cert));
  if (rightsCache.size >= RIGHTS_CACHE_SIZE) rightsCache.delete(rightsCache.keys().next().value!);
  rightsCache.set(key, rights);
  return rights;
}

function decodeIssuerRights(cert: X509Certificate): IssuerRights {
  let tbs;
  try {
    tbs = AsnConvert.parse(cert.raw, Certificate).tbsCertificate;
  } catch (error) {
    throw new TlsError(
      `cannot decode certificate ${describeSubject(cert)}: ${(error as Error).message}`,
    );
  }
  const extension = (oid: string) => tbs.extensions?.find((e) => e.extnID === oid)?.extnValue;
  const rights: IssuerRights = {
    hasBasicConstraints: false,
    ca: false,
    pathLen: undefined,
    keyUsage: undefined,
    v1: tbs.version === Version.v1,
  };
  try {
    const basic = extension(id_ce_basicConstraints);
    if (basic) {
      const value = AsnConvert.parse(basic, BasicConstraints);
      rights.hasBasicConstraints = true;
      rights.ca = value.cA;
      rights.pathLen = value.pathLenConstraint;
    }
    const usage = extension(id_ce_keyUsage);
    if (usage) rights.keyUsage = AsnConvert.parse(usage, KeyUsage).toJSON();
  } catch (error) {
    throw new TlsError(
      `cannot decode the extensions of certificate ${describeSubject(cert)}: ${
        (error as Error).message
      }`,
    );
  }
  return rights;
}

/** A certificate subject for a log line: one line, control characters escaped (it comes from the client). */
function describeSubject(cert: X509Certificate): string {
  const escape = (c: string) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  // deno-lint-ignore no-control-regex
  return `'${cert.subject.replaceAll("\n", ", ").replace(/[\x00-\x1f\x7f]/g, escape)}'`;
}

/**
 * `issuer`'s name is `cert`'s issuer name and its key signed `cert`. (checkIssued, OpenSSL's X509_check_issued,
 * also matches key identifiers and keyUsage; its verdict counts after the CA-rights check, which gives the
 * clearer reason.)
 */
function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return (cert.issuer === issuer.subject || cert.checkIssued(issuer)) &&
      cert.verify(issuer.publicKey);
  } catch {
    return false; // a key node:crypto cannot use (e.g. an unsupported type) signed nothing here
  }
}

/** Subject equals issuer: such an intermediate does not count against a pathLenConstraint. */
function selfIssued(cert: X509Certificate): boolean {
  return cert.subject === cert.issuer;
}

/**
 * Throws unless `issuer` may have issued `child`: a CA by basicConstraints (a trust anchor may also be an
 * extension-less v1 root, as OpenSSL allows), keyCertSign if it has keyUsage, and no more intermediate CAs below
 * it (`below`, not counting self-issued ones) than its pathLenConstraint allows.
 */
function checkIssuerRights(
  issuer: X509Certificate,
  child: X509Certificate,
  below: number,
  anchor: boolean,
): void {
  const rights = issuerRights(issuer);
  const name = describeSubject(issuer);
  if (!rights.hasBasicConstraints && anchor && rights.v1 && selfIssued(issuer)) return;
  if (!rights.ca) {
    throw new TlsError(
      `client certificate chain: ${name} is not a CA (no basicConstraints CA:TRUE) but issued ` +
        describeSubject(child),
    );
  }
  if (rights.keyUsage && !rights.keyUsage.includes("keyCertSign")) {
    throw new TlsError(`client certificate chain: the keyUsage of CA ${name} lacks keyCertSign`);
  }
  if (rights.pathLen !== undefined && below > rights.pathLen) {
    throw new TlsError(
      `client certificate chain: path length constraint of ${name} exceeded ` +
        `(${below} intermediate CAs below it, at most ${rights.pathLen} allowed)`,
    );
  }
}

/**
 * Checks a client certificate chain (leaf first), as OpenSSL's verification would: each certificate issued and
 * signed by the next, all within their validity period, the last one issued and signed by a CA from the bundle
 * (or itself in the bundle); every issuer, the trusted one included, must have CA rights (see checkIssuerRights).
 * node:crypto checks names, signatures and dates; @peculiar/asn1-x509 decodes basicConstraints and keyUsage,
 * which node:crypto does not expose (pathLenConstraint at all, keyUsage only in Deno).
 */
export function verifyClientChain(
  chain: X509Certificate[],
  cas: X509Certificate[],
  now = new Date(),
) {
  if (chain.length === 0) throw new TlsError("no client certificate");
  for (const cert of chain) {
    if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) {
      throw new TlsError(`client certificate ${describeSubject(cert)} is not valid now`);
    }
  }
  // Intermediate CAs between the leaf and the issuer being checked (self-issued ones do not count).
  let below = 0;
  for (let i = 0; i + 1 < chain.length; i++) {
    if (i > 0 && !selfIssued(chain[i])) below++;
    if (!signedBy(chain[i], chain[i + 1])) {
      throw new TlsError(`client certificate chain is broken at ${describeSubject(chain[i])}`);
    }
    checkIssuerRights(chain[i + 1], chain[i], below, false);
    if (!chain[i].checkIssued(chain[i + 1])) {
      throw new TlsError(`client certificate chain is broken at ${describeSubject(chain[i])}`);
    }
  }
  const top = chain[chain.length - 1];
  if (cas.some((ca) => ca.fingerprint256 === top.fingerprint256)) return;
  if (chain.length > 1 && !selfIssued(top)) below++;
  let refusal: TlsError | undefined;
  for (const ca of cas) {
    if (!signedBy(top, ca)) continue;
    try {
      checkIssuerRights(ca, top, below, true);
    } catch (error) {
      refusal ??= error as TlsError;
      continue;
    }
    if (top.checkIssued(ca)) return;
  }
  throw refusal ??
    new TlsError(`client certificate ${describeSubject(chain[0])} is not issued by a trusted CA`);
}

/** The chain a TLS peer presented, leaf first (from node:tls' linked form). */
function peerChain(socket: tls.TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let link = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  const seen = new Set<string>();
  while (link?.raw && !seen.has(link.fingerprint256) && chain.length < 10) {
    seen.add(link.fingerprint256);
    chain.push(new X509Certificate(link.raw));
    link = link.issuerCertificate;
  }
  return chain;
}

/** An idle wss session's pending read of ciphertext (a full one switches to LARGE_CIPHERTEXT_READ). */
const SMALL_CIPHERTEXT_READ = 1024;
const LARGE_CIPHERTEXT_READ = 128 * 1024;

/**
 * A node Duplex over a byte stream that first replays bytes already read from it. Pull-based, and it reads
 * only while `gate` is open: node:tls (Deno 2.9.6) pulls ciphertext and decrypts whether or not its reader
 * keeps up (its read stop only withholds the plaintext, which piles up: 2.3 GB in 4 s from a client flooding
 * a stalled target, measured), so the reader of the plaintext closes the gate instead.
 */
function connDuplex(conn: ByteStream, replay: Uint8Array, gate: ReadGate): Duplex {
  let pending: Uint8Array | undefined = replay.length > 0 ? replay : undefined;
  // Each read hands its buffer to the stream, so every read needs a fresh one: small while the peer is quiet
  // (an idle connection waits on it), large once reads come back full (128 KiB measured 1.2x the wss
  // throughput of 32 KiB).
  let size = SMALL_CIPHERTEXT_READ;
  return new Duplex({
    read() {
      if (pending) {
        const bytes = pending;
        pending = undefined;
        this.push(bytes);
        return;
      }
      if (!gate.open) {
        gate.whenOpen(() => this._read(size));
        return;
      }
      const buffer = new Uint8Array(size);
      conn.read(buffer).then(
        (n) => {
          if (n === null) return this.push(null);
          size = n === size
            ? LARGE_CIPHERTEXT_READ
            : n < SMALL_CIPHERTEXT_READ
            ? SMALL_CIPHERTEXT_READ
            : size;
          this.push(buffer.subarray(0, n));
        },
        () => this.push(null),
      );
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writeAll(conn, chunk).then(() => callback(), (error) => callback(error));
    },
    // TLS hands over one record at a time; records queued meanwhile go out in one write.
    writev(chunks: { chunk: Uint8Array }[], callback) {
      const total = chunks.reduce((sum, { chunk }) => sum + chunk.length, 0);
      const joined = new Uint8Array(total);
      let offset = 0;
      for (const { chunk } of chunks) {
        joined.set(chunk, offset);
        offset += chunk.length;
      }
      writeAll(conn, joined).then(() => callback(), (error) => callback(error));
    },
    final(callback) {
      conn.closeWrite().then(() => callback(), () => callback());
    },
    destroy(_error, callback) {
      closeQuietly(conn);
      callback(null);
    },
  });
}

/** A decrypted TLS connection as a ByteStream. */
export class TlsStream extends NodeSocketStream {
  declare readonly socket: tls.TLSSocket;

  constructor(socket: tls.TLSSocket, conn: ByteStream, gate: ReadGate) {
    super(socket, () => closeQuietly(conn), gate);
  }
}

/** The secure context of the credentials last read, shared by every connection until they change on disk. */
let sharedContext: { credentials: string; context: tls.SecureContext } | undefined;

/**
 * One secure context for all connections with the same credentials: one per connection kept its own copy of the
 * parsed certificate and key for as long as the session lasted. The files are still read for every connection,
 * so a renewed certificate makes a new context.
 */
function secureContextFor(options: TlsOptions, credentials: Credentials): tls.SecureContext {
  const key = JSON.stringify([
    credentials.cert,
    credentials.key,
    credentials.ca,
    options.minVersion,
  ]);
  if (sharedContext?.credentials !== key) {
    sharedContext = {
      credentials: key,
      context: tls.createSecureContext({
        cert: credentials.cert,
        key: credentials.key,
        ca: credentials.ca,
        minVersion: options.minVersion,
      }),
    };
  }
  return sharedContext.context;
}

/**
 * Runs the server handshake on `conn` (whose first bytes, `sniffed`, were already read) and returns the
 * decrypted stream. Rejects with TlsError on failure, when the client closes mid-handshake, or when `signal`
 * aborts; the connection is then closed.
 */
export async function acceptTls(
  conn: ByteStream,
  sniffed: Uint8Array,
  options: TlsOptions,
  credentials: Credentials,
  signal?: AbortSignal,
): Promise<TlsStream> {
  // The decrypted side tells the ciphertext side when to stop reading: node:tls itself never stops.
  const gate = new ReadGate();
  const socket = new tls.TLSSocket(connDuplex(conn, sniffed, gate), {
    isServer: true,
    secureContext: secureContextFor(options, credentials),
    requestCert: options.verifyClient,
    rejectUnauthorized: options.verifyClient,
  });
  guardDeferredStart(socket);
  const stream = new TlsStream(socket, conn, gate);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("secure", () => resolve());
      socket.once("error", (error: Error) => reject(new TlsError(error.message)));
      // A client that goes away mid-handshake may end the stream without an error or a close event.
      const closed = () => reject(new TlsError("connection closed during the TLS handshake"));
      socket.once("close", closed);
      socket.once("end", closed);
      if (signal?.aborted) reject(new TlsError("TLS handshake cut"));
      signal?.addEventListener("abort", () => reject(new TlsError("TLS handshake cut")), {
        once: true,
      });
    });
    if (credentials.ca) {
      verifyClientChain(peerChain(socket), credentials.ca.map((pem) => new X509Certificate(pem)));
    }
    return stream;
  } catch (error) {
    stream.close();
    throw error instanceof TlsError ? error : new TlsError(String(error));
  }
}

/**
 * Deno 2.9.6's node:tls schedules `TLSSocket._start` for later; when the handshake has already failed and the
 * polyfill has already torn the socket's internals down by then, it throws (`Cannot read properties of null
 * (reading '_flushEncOut')`) outside any caller: a client with an incompatible TLS hello could take the server
 * down. A failed or destroyed socket has nothing left to start, so that failure is dropped; any other is not.
 */
function guardDeferredStart(socket: tls.TLSSocket): void {
  const internals = socket as unknown as { _start?: () => void };
  const start = internals._start;
  if (typeof start !== "function") return;
  internals._start = function (this: tls.TLSSocket) {
    try {
      start.call(this);
    } catch (error) {
      if (!this.destroyed && !handshakeFailed.has(this)) throw error;
    }
  };
  socket.once("error", () => handshakeFailed.add(socket));
}

/** Sockets whose handshake already failed (their deferred start may find the internals gone). */
const handshakeFailed = new WeakSet<tls.TLSSocket>();

/** The verified client certificate's subject CN, if the peer presented one. */
export function peerCommonName(stream: TlsStream): string | undefined {
  const subject = stream.socket.getPeerCertificate()?.subject as unknown as
    | Record<string, string>
    | undefined;
  return subject?.CN;
}
