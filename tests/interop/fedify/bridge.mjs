// Bridge between pytest and Fedify (@fedify/fedify 2.3.6), an independent ActivityPub
// implementation in TypeScript. Reads one JSON command per line on stdin, answers one JSON line
// on stdout: {"id": ..., "result": ...} or {"id": ..., "error": "..."}.
//
// Keys and actor documents come from the command itself through a custom documentLoader, so
// nothing here touches the network; JSON-LD contexts come from Fedify's preloaded set.
import { createInterface } from "node:readline";
import { Buffer } from "node:buffer";
import { Temporal } from "@js-temporal/polyfill";
import { signObject, signRequest, verifyObject, verifyProof, verifyRequestDetailed } from "@fedify/fedify";
import { Object as APObject } from "@fedify/vocab";
import { getDocumentLoader } from "@fedify/vocab-runtime";

const contextLoader = getDocumentLoader();

// What Fedify's send pipeline (middleware, sendActivity) does to a signed activity before it goes
// on the wire: compact "as:Public" audiences are rewritten to the full IRI, which is also the form
// createProof() signs. It is internal to Fedify, so it is loaded from the pinned 2.3.6 build.
const { o: normalizeOutgoingActivityJsonLd } = await import(
  new URL("./node_modules/@fedify/fedify/dist/proof-CrtfGSi7.js", import.meta.url)
);

// Serve the documents pytest gave us; a key id "actor#main-key" loads the actor document.
function documentLoaderFor(documents) {
  return async (url) => {
    const document = documents[url] ?? documents[url.split("#")[0]];
    if (document === undefined) throw new Error(`document not provided by the test: ${url}`);
    return { contextUrl: null, documentUrl: url, document };
  };
}

function pemBody(pem) {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
}

async function importPrivateKey(pem, kind) {
  const algorithm = kind === "ed25519" ? { name: "Ed25519" } : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  // Fedify insists on extractable keys (it exports them to check their type).
  return await crypto.subtle.importKey("pkcs8", pemBody(pem), algorithm, true, ["sign"]);
}

function buildRequest({ method, url, headers, body }) {
  const init = { method, headers: new Headers(headers) };
  if (body != null && method !== "GET" && method !== "HEAD") init.body = Buffer.from(body, "base64");
  return new Request(url, init);
}

const commands = {
  async verifyProof({ document, documents }) {
    const options = { documentLoader: documentLoaderFor(documents), contextLoader };
    const object = await APObject.fromJsonLd(document, options);
    const proofs = [];
    for await (const proof of object.getProofs(options)) {
      const key = await verifyProof(document, proof, options);
      proofs.push(key?.id?.href ?? null);
    }
    // verifyObject also demands that every actor/attributedTo is vouched for by a proof's key.
    const verified = await verifyObject(APObject, document, options);
    return { proofs, object: verified !== null };
  },

  async verifyRequest({ request, documents, now }) {
    const result = await verifyRequestDetailed(buildRequest(request), {
      documentLoader: documentLoaderFor(documents),
      contextLoader,
      currentTime: Temporal.Instant.from(now),
    });
    if (result.verified) return { verified: true, keyId: result.key.id?.href ?? null };
    return { verified: false, reason: result.reason.type };
  },

  async signRequest({ request, privateKeyPem, keyKind, keyId, spec, now }) {
    const key = await importPrivateKey(privateKeyPem, keyKind);
    const signed = await signRequest(buildRequest(request), key, new URL(keyId), {
      spec,
      currentTime: Temporal.Instant.from(now),
    });
    const headers = {};
    for (const [name, value] of signed.headers) headers[name] = value;
    return { headers };
  },

  async signObject({ document, documents, privateKeyPem, keyId, created }) {
    const options = { documentLoader: documentLoaderFor(documents), contextLoader };
    const object = await APObject.fromJsonLd(document, options);
    const key = await importPrivateKey(privateKeyPem, "ed25519");
    const signed = await signObject(object, key, new URL(keyId), {
      ...options,
      created: Temporal.Instant.from(created),
    });
    const compact = await signed.toJsonLd({ format: "compact", contextLoader });
    return { document: await normalizeOutgoingActivityJsonLd(compact, contextLoader) };
  },
};

const lines = createInterface({ input: process.stdin, terminal: false });
for await (const line of lines) {
  if (!line.trim()) continue;
  let id = null;
  try {
    const message = JSON.parse(line);
    id = message.id;
    const handler = commands[message.command];
    if (!handler) throw new Error(`unknown command ${message.command}`);
    const result = await handler(message.args);
    process.stdout.write(JSON.stringify({ id, result }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ id, error: String(error?.stack ?? error) }) + "\n");
  }
}
