// Client chain checks (lib/tls.ts): dates, issuer links, CA rights, judged as openssl verify judges them. The
// certificates are made with openssl; no socket, no proxy.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { issuerRights, verifyClientChain } from "../../lib/tls.ts";
import {
  type ClientChain,
  clientChains,
  opensslVerifies,
  withTestCerts,
} from "../helpers/certs.ts";

Deno.test("client chain checks: dates, issuer links, trusted roots", () =>
  withTestCerts(async (certs) => {
    const load = async (path: string) => new X509Certificate(await Deno.readTextFile(path));
    const ca = await load(certs.ca);
    const client = await load(certs.clientCert);
    const untrusted = await load(certs.untrustedCert);
    assert.doesNotThrow(() => verifyClientChain([client], [ca]));
    assert.doesNotThrow(
      () => verifyClientChain([client, ca], [ca]),
      "a chain that includes its root",
    );
    assert.throws(() => verifyClientChain([untrusted], [ca]), /not issued by a trusted CA/);
    assert.throws(() => verifyClientChain([client, untrusted], [ca]), /chain is broken/);
    assert.throws(
      () => verifyClientChain([client], [ca], new Date(Date.now() + 10 * 86400_000)),
      /not valid now/,
    );
    assert.throws(() => verifyClientChain([], [ca]), /no client certificate/);
  }));

Deno.test("verifyClientChain: CA rights of every issuer, as openssl verify judges them", () =>
  withTestCerts(async (certs) => {
    const chains = await clientChains(certs);
    const load = async (path: string) => new X509Certificate(await Deno.readTextFile(path));
    const ca = await load(certs.ca);
    const asPresented = async (chain: ClientChain) =>
      await Promise.all([chain.leaf, ...chain.intermediates].map((c) => load(c.cert)));
    for (const name of ["forged", "tooDeep", "noCertSign", "proper"] as const) {
      const presented = await asPresented(chains[name]);
      let ours = true;
      try {
        verifyClientChain(presented, [ca]);
      } catch {
        ours = false;
      }
      assert.equal(
        ours,
        await opensslVerifies(certs, chains[name]),
        `${name}: same verdict as openssl`,
      );
    }
    const forged = await asPresented(chains.forged);
    assert.throws(() => verifyClientChain(forged, [ca]), /'CN=leaf' is not a CA/);
    // The CA-issued client certificate has no basicConstraints at all: no CA either.
    const client = await load(certs.clientCert);
    const signedByClient = await certs.issue("by-client", "admin", "", {
      cert: certs.clientCert,
      key: certs.clientKey,
    });
    assert.throws(
      () =>
        verifyClientChain(
          [new X509Certificate(Deno.readTextFileSync(signedByClient.cert)), client],
          [ca],
        ),
      /'CN=client1' is not a CA/,
    );
    // A trusted entry is held to the same rules: a non-CA in the bundle issues nothing ...
    const endEntity = forged[1];
    assert.throws(() => verifyClientChain([forged[0]], [endEntity]), /'CN=leaf' is not a CA/);
    // ... and a trusted intermediate's pathLen counts the CAs presented below it.
    const tooDeep = await asPresented(chains.tooDeep);
    const pathLenZero = tooDeep[2];
    assert.throws(
      () => verifyClientChain(tooDeep.slice(0, 2), [pathLenZero]),
      /path length constraint of 'CN=pathlen0' exceeded \(1 intermediate CAs below it, at most 0/,
    );
    const proper = await asPresented(chains.proper);
    assert.doesNotThrow(() => verifyClientChain(proper, [ca]));
    assert.doesNotThrow(() => verifyClientChain([...proper, ca], [ca]), "with the root included");
    assert.doesNotThrow(
      () => verifyClientChain(proper.slice(0, 1), [pathLenZero]),
      "trusted intermediate",
    );
    const noCertSign = await asPresented(chains.noCertSign);
    assert.throws(() => verifyClientChain(noCertSign, [ca]), /lacks keyCertSign/);
    const rights = issuerRights(pathLenZero);
    assert.deepEqual({ ...rights, keyUsage: rights.keyUsage?.toSorted() }, {
      hasBasicConstraints: true,
      ca: true,
      pathLen: 0,
      keyUsage: ["crlSign", "keyCertSign"],
      v1: false,
    });
    assert.deepEqual(issuerRights(client), {
      hasBasicConstraints: false,
      ca: false,
      pathLen: undefined,
      keyUsage: undefined,
      v1: false,
    });
  }));
