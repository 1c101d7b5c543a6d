/**
 * Certificates for the TLS tests, made fresh with openssl in a temporary directory: a CA, a server certificate it
 * signed (localhost and 127.0.0.1), a client certificate it signed, an untrusted self-signed client certificate,
 * and a passphrase-protected copy of the server key. Also client chains whose issuers lack CA rights, with
 * `openssl verify`'s verdict on each (the reference for the proxy's own chain checks).
 */

import { sleep } from "../../lib/deadline.ts";

export interface TestCerts {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  /** The server certificate and key in one PEM file (websockify's self.pem layout). */
  combined: string;
  encryptedKey: string;
  password: string;
  clientCert: string;
  clientKey: string;
  untrustedCert: string;
  untrustedKey: string;
  /** Issues another server certificate for `cn` into `certPath`/`keyPath` (a renewal). */
  issueServer(cn: string, certPath: string, keyPath: string, sans?: string): Promise<void>;
  /**
   * Issues `<name>.pem`/`<name>.key` for `cn` with the given extension lines (openssl -extfile syntax), signed by
   * `issuer` (an earlier `issue` result; default: the test CA). Returns the absolute paths.
   */
  issue(name: string, cn: string, extensions: string, issuer?: IssuedCert): Promise<IssuedCert>;
  /** Issues a CA-signed server certificate valid only from `start` to `end` (openssl `YYYYMMDDHHMMSSZ`). */
  issueDated(name: string, start: string, end: string): Promise<IssuedCert>;
  remove(): Promise<void>;
}

/** A certificate and its key, as absolute paths. */
/** The proxy's arguments for serving TLS with the test server certificate and its key. */
export function serverCertArgs(certs: Pick<TestCerts, "serverCert" | "serverKey">): string[] {
  return [`--cert=${certs.serverCert}`, `--key=${certs.serverKey}`];
}

export interface IssuedCert {
  cert: string;
  key: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const output = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
}

export async function makeCerts(): Promise<TestCerts> {
  const dir = await Deno.makeTempDir({ prefix: "websockify-certs-" });
  const days = ["-days", "2"];
  const selfSigned = (subject: string, cert: string, key: string) =>
    openssl([
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      ...days,
      "-subj",
      subject,
    ], dir);
  await selfSigned("/CN=Test CA", "ca.pem", "ca.key");
  const issue = async (
    cn: string,
    cert: string,
    key: string,
    extensions: string,
    issuer = { cert: "ca.pem", key: "ca.key" },
  ) => {
    await openssl([
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      `${cert}.csr`,
      "-subj",
      `/CN=${cn}`,
    ], dir);
    await Deno.writeTextFile(`${dir}/${cert}.ext`, extensions);
    await openssl([
      "x509",
      "-req",
      "-in",
      `${cert}.csr`,
      "-CA",
      issuer.cert,
      "-CAkey",
      issuer.key,
      "-CAcreateserial",
      "-out",
      cert,
      ...days,
      "-extfile",
      `${cert}.ext`,
    ], dir);
  };
  const serverExt = (sans: string) => `subjectAltName=${sans}\nextendedKeyUsage=serverAuth\n`;
  await issue("localhost", "server.pem", "server.key", serverExt("DNS:localhost,IP:127.0.0.1"));
  await issue("client1", "client.pem", "client.key", "extendedKeyUsage=clientAuth\n");
  await selfSigned("/CN=intruder", "untrusted.pem", "untrusted.key");
  await openssl([
    "pkcs8",
    "-topk8",
    "-in",
    "server.key",
    "-out",
    "server-encrypted.key",
    "-passout",
    "pass:s3cret phrase",
  ], dir);
  await Deno.writeTextFile(
    `${dir}/combined.pem`,
    (await Deno.readTextFile(`${dir}/server.pem`)) + (await Deno.readTextFile(`${dir}/server.key`)),
  );
  return {
    dir,
    ca: `${dir}/ca.pem`,
    serverCert: `${dir}/server.pem`,
    serverKey: `${dir}/server.key`,
    combined: `${dir}/combined.pem`,
    encryptedKey: `${dir}/server-encrypted.key`,
    password: "s3cret phrase",
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client.key`,
    untrustedCert: `${dir}/untrusted.pem`,
    untrustedKey: `${dir}/untrusted.key`,
    async issueServer(cn, certPath, keyPath, sans = "DNS:localhost,IP:127.0.0.1") {
      const name = `renewed-${crypto.randomUUID()}`;
      await issue(cn, `${name}.pem`, `${name}.key`, serverExt(sans));
      // Replace atomically, as certificate renewal tools do.
      await Deno.rename(`${dir}/${name}.pem`, certPath);
      await Deno.rename(`${dir}/${name}.key`, keyPath);
    },
    async issue(name, cn, extensions, issuer) {
      await issue(cn, `${name}.pem`, `${name}.key`, extensions, issuer);
      return { cert: `${dir}/${name}.pem`, key: `${dir}/${name}.key` };
    },
    async issueDated(name, start, end) {
      // `openssl x509` cannot set dates in the past or future; `openssl ca` can, with a minimal database.
      await Deno.writeTextFile(
        `${dir}/dated.cnf`,
        "[ca]\ndefault_ca = dated\n[dated]\ndatabase = dated-index.txt\nnew_certs_dir = .\n" +
          "serial = dated-serial.txt\ndefault_md = sha256\npolicy = any\nunique_subject = no\n" +
          "[any]\ncommonName = supplied\n",
      );
      await Deno.writeTextFile(`${dir}/dated-index.txt`, "");
      await Deno.writeTextFile(`${dir}/dated-serial.txt`, "1000\n");
      const cert = `${dir}/${name}.pem`;
      const key = `${dir}/${name}.key`;
      await openssl([
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        `${name}.csr`,
        "-subj",
        "/CN=localhost",
      ], dir);
      await openssl([
        "ca",
        "-batch",
        "-notext",
        "-config",
        "dated.cnf",
        "-cert",
        "ca.pem",
        "-keyfile",
        "ca.key",
        "-in",
        `${name}.csr`,
        "-out",
        cert,
        "-startdate",
        start,
        "-enddate",
        end,
      ], dir);
      return { cert, key };
    },
    remove: () => Deno.remove(dir, { recursive: true }),
  };
}

/** Runs `openssl s_client` against 127.0.0.1:port with extra arguments, sending `input`; returns its output. */
export async function sClient(
  port: number,
  args: string[],
  input = "",
): Promise<{ ok: boolean; text: string }> {
  const child = new Deno.Command("openssl", {
    args: ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10000),
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  // Keep stdin open briefly so the answer can arrive before s_client closes the connection.
  await sleep(700);
  await writer.close().catch(() => {});
  const output = await child.output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return { ok: output.success, text };
}

/** Runs `body` with fresh certificates (and the CA's PEM text), removing them afterwards. */
export async function withTestCerts(
  body: (certs: TestCerts, ca: string) => Promise<void>,
): Promise<void> {
  const certs = await makeCerts();
  try {
    await body(certs, await Deno.readTextFile(certs.ca));
  } finally {
    await certs.remove();
  }
}

/** Client chains for the CA-rights checks, each issued with openssl; `intermediates` are listed leaf side first. */
export async function clientChains(certs: TestCerts) {
  const client = "extendedKeyUsage=clientAuth\n";
  const ca = (extra: string) => `basicConstraints=critical,CA:TRUE${extra}\n`;
  // A CA-issued end-entity certificate used as if it were a CA (the attack).
  const endEntity = await certs.issue("leaf", "leaf", `basicConstraints=CA:FALSE\n${client}`);
  const forged = await certs.issue("forged-admin", "admin", client, endEntity);
  // An intermediate allowed no CA below it, which signs a CA anyway.
  const pathLenZero = await certs.issue(
    "pathlen0",
    "pathlen0",
    ca(",pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign"),
  );
  const subCa = await certs.issue("sub-ca", "sub-ca", ca("\nkeyUsage=keyCertSign"), pathLenZero);
  const tooDeep = await certs.issue("too-deep-admin", "admin", client, subCa);
  // A CA whose keyUsage does not include keyCertSign.
  const noCertSign = await certs.issue(
    "no-certsign",
    "no-certsign",
    ca("\nkeyUsage=digitalSignature"),
  );
  const noCertSignChild = await certs.issue("no-certsign-admin", "admin", client, noCertSign);
  // A proper intermediate CA.
  const proper = await certs.issue("proper-admin", "admin", client, pathLenZero);
  return {
    forged: { leaf: forged, intermediates: [endEntity] },
    tooDeep: { leaf: tooDeep, intermediates: [subCa, pathLenZero] },
    noCertSign: { leaf: noCertSignChild, intermediates: [noCertSign] },
    proper: { leaf: proper, intermediates: [pathLenZero] },
  };
}

/** A leaf and the intermediates presented with it (leaf side first). */
export type ClientChain = {
  leaf: { cert: string; key: string };
  intermediates: { cert: string }[];
};

/** `openssl verify` of a chain against the test CA: the reference verdict. */
export async function opensslVerifies(certs: TestCerts, chain: ClientChain): Promise<boolean> {
  const untrusted = `${certs.dir}/untrusted-${crypto.randomUUID()}.pem`;
  await Deno.writeTextFile(
    untrusted,
    (await Promise.all(chain.intermediates.map((c) => Deno.readTextFile(c.cert)))).join(""),
  );
  const output = await new Deno.Command("openssl", {
    args: ["verify", "-CAfile", certs.ca, "-untrusted", untrusted, chain.leaf.cert],
    stdout: "null",
    stderr: "null",
  }).output();
  return output.success;
}
