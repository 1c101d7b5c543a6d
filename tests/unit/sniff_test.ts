// A connection's first bytes (lib/sniff.ts): TLS, maybe the Flash policy request, or plain HTTP; the policy
// answer over an in-memory stream pair.
import assert from "node:assert/strict";
import { Deadline, DeadlineExpired } from "../../lib/deadline.ts";
import { writeAll } from "../../lib/io.ts";
import { answerFlashPolicy, classifyFirstBytes, readSome } from "../../lib/sniff.ts";
import { readToEnd } from "../helpers/bytes.ts";
import { memoryStreamPair } from "../../lib/memory_stream.ts";
import { TLS_START } from "../helpers/raw_client.ts";

const text = (s: string) => new TextEncoder().encode(s);
const latin1 = new TextDecoder("latin1");
const POLICY =
  '<cross-domain-policy><allow-access-from domain="*" to-ports="*" /></cross-domain-policy>\0';

Deno.test("classifyFirstBytes: 0x16 or 0x80 is TLS, '<' may be the Flash request, anything else is plain", () => {
  assert.equal(classifyFirstBytes(TLS_START), "tls");
  assert.equal(classifyFirstBytes(new Uint8Array([0x80, 0x2e, 0x01])), "tls", "SSLv2-style hello");
  assert.equal(classifyFirstBytes(text("<policy-file-request/>\0")), "policy");
  assert.equal(classifyFirstBytes(text("<")), "policy");
  for (const plain of ["GET / HTTP/1.1\r\n", "\r\n", "\x00", "\x15\x03\x01", "\x17"]) {
    assert.equal(classifyFirstBytes(text(plain)), "plain", JSON.stringify(plain));
  }
});

Deno.test("readSome: one read of at most `size` bytes; undefined at EOF", async () => {
  const [client, server] = memoryStreamPair();
  await writeAll(client, text("GET / HTTP/1.1\r\n"));
  assert.equal(latin1.decode(await readSome(server, 4)), "GET ");
  assert.equal(latin1.decode(await readSome(server, 1024)), "/ HTTP/1.1\r\n");
  await client.closeWrite();
  assert.equal(await readSome(server, 1024), undefined);
  client.close();
  server.close();
});

Deno.test("answerFlashPolicy: a request trickled in pieces gets the policy; the connection is done", async () => {
  const [client, server] = memoryStreamPair();
  await writeAll(client, text("<pol"));
  const first = (await readSome(server, 1024))!;
  assert.equal(classifyFirstBytes(first), "policy");
  const answering = answerFlashPolicy(server, first, new Deadline());
  await writeAll(client, text("icy-file-"));
  await writeAll(client, text("request/>\0"));
  assert.equal(await answering, undefined);
  server.close();
  assert.equal(latin1.decode(await readToEnd(client)), POLICY);
  client.close();
});

Deno.test("answerFlashPolicy: other bytes after '<' are handed back for the HTTP parser, nothing is answered", async () => {
  const [client, server] = memoryStreamPair();
  await writeAll(client, text("<"));
  const first = (await readSome(server, 1024))!;
  const answering = answerFlashPolicy(server, first, new Deadline());
  await writeAll(client, text("polka"));
  assert.equal(latin1.decode(await answering), "<polka");
  assert.equal(
    latin1.decode(await answerFlashPolicy(server, text("<html>\r\n"), new Deadline())),
    "<html>\r\n",
    "a first read that already differs: no further read",
  );
  server.close();
  assert.equal((await readToEnd(client)).length, 0);
  client.close();
});

Deno.test("answerFlashPolicy: EOF inside the request ends the connection; a stalled request ends at the deadline", async () => {
  const [client, server] = memoryStreamPair();
  await client.closeWrite();
  assert.equal(await answerFlashPolicy(server, text("<policy"), new Deadline()), undefined);
  server.close();
  assert.equal((await readToEnd(client)).length, 0, "no answer to half a request");
  client.close();

  const [stalled, stalledServer] = memoryStreamPair();
  const deadline = new Deadline(() => stalledServer.close());
  deadline.set(20);
  await assert.rejects(
    answerFlashPolicy(stalledServer, text("<pol"), deadline),
    (e) => e instanceof DeadlineExpired && e.why === "timeout",
  );
  deadline.clear();
  stalled.close();
});
