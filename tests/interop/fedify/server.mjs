// A small ActivityPub server built with Fedify (@fedify/fedify 2.3.6), an independent implementation,
// listening on 127.0.0.1 so that a Halles node can be judged by it over real HTTP.
//
// Actors (all Person, RSA key for HTTP signatures + Ed25519 key for object integrity proofs):
//   acctreader  follows a node by its acct: handle (WebFinger over HTTPS, test CA via NODE_EXTRA_CA_CERTS)
//   urlreader   follows a node by its actor URL
//   publisher   publishes Event objects to its followers (the node follows it with `halles follow`)
//
// Every POST to an inbox is inspected *before* Fedify's own inbox handles it: the HTTP signature is
// checked with Fedify's verifyRequestDetailed, the activity's and the embedded object's FEP-8b32 proofs
// with verifyObject/verifyProof; the result, with the status Fedify's inbox answered, is printed as
// one JSON line {"report": ...}. Inbox listeners print {"event": ...}. Commands come on stdin as JSON
// lines {"id", "command", "args"} and are answered with {"id", "result"} or {"id", "error"}.
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Buffer } from "node:buffer";
import { randomUUID } from "node:crypto";
import { Temporal } from "@js-temporal/polyfill";
import {
  createFederation,
  generateCryptoKeyPair,
  MemoryKvStore,
  signRequest,
  verifyObject,
  verifyProof,
  verifyRequestDetailed,
} from "@fedify/fedify";
import {
  Accept,
  Activity,
  Create,
  Delete,
  Event,
  Follow,
  isActor,
  Object as APObject,
  Person,
  Place,
  PUBLIC_COLLECTION,
  Tombstone,
  Undo,
  Update,
} from "@fedify/vocab";

const PORT = Number(process.env.FEDIFY_PORT);
const ORIGIN = `http://127.0.0.1:${PORT}`;
const IDENTIFIERS = ["acctreader", "urlreader", "publisher"];

const keyPairs = {};
for (const identifier of IDENTIFIERS) {
  keyPairs[identifier] = [
    await generateCryptoKeyPair("RSASSA-PKCS1-v1_5"),
    await generateCryptoKeyPair("Ed25519"),
  ];
}
/** Followers of the publisher: actor id -> Actor object. */
const followers = new Map();

function emit(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

const federation = createFederation({
  kv: new MemoryKvStore(),
  origin: ORIGIN,
  allowPrivateAddress: true,
});

federation
  .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
    if (!IDENTIFIERS.includes(identifier)) return null;
    const keys = await ctx.getActorKeyPairs(identifier);
    return new Person({
      id: ctx.getActorUri(identifier),
      preferredUsername: identifier,
      name: `Fedify ${identifier}`,
      inbox: ctx.getInboxUri(identifier),
      url: ctx.getActorUri(identifier),
      publicKey: keys[0].cryptographicKey,
      assertionMethods: keys.map((key) => key.multikey),
    });
  })
  .setKeyPairsDispatcher(async (_ctx, identifier) => keyPairs[identifier] ?? []);

federation
  .setInboxListeners("/users/{identifier}/inbox", "/inbox")
  .on(Follow, async (ctx, follow) => {
    if (ctx.recipient !== "publisher") return;
    const follower = await follow.getActor(ctx);
    if (!isActor(follower)) return;
    followers.set(follower.id.href, follower);
    await ctx.sendActivity(
      { identifier: "publisher" },
      follower,
      new Accept({
        id: new URL(`${ORIGIN}/accepts/${randomUUID()}`),
        actor: ctx.getActorUri("publisher"),
        object: follow,
      }),
    );
    emit({ event: { type: "Follow", recipient: ctx.recipient, actor: follower.id.href } });
  })
  .on(Undo, async (ctx, undo) => {
    followers.delete(undo.actorId?.href);
    emit({ event: { type: "Undo", recipient: ctx.recipient, actor: undo.actorId?.href } });
  })
  .on(Accept, async (ctx, accept) => {
    emit({
      event: { type: "Accept", recipient: ctx.recipient, actor: accept.actorId?.href, object: accept.objectId?.href },
    });
  })
  .on(Create, async (ctx, activity) => emit({ event: await described(ctx, activity) }))
  .on(Update, async (ctx, activity) => emit({ event: await described(ctx, activity) }))
  .on(Delete, async (ctx, activity) => emit({ event: await described(ctx, activity) }));

/** What Fedify's own parser made of a received activity and its object. */
async function described(ctx, activity) {
  const object = await activity.getObject(ctx);
  return {
    type: activity instanceof Create ? "Create" : activity instanceof Update ? "Update" : "Delete",
    recipient: ctx.recipient,
    id: activity.id?.href,
    actor: activity.actorId?.href,
    object: {
      id: object?.id?.href ?? activity.objectId?.href,
      type: object instanceof Event ? "Event" : object instanceof Tombstone ? "Tombstone" : object?.constructor?.name,
      name: object?.name?.toString() ?? null,
      startTime: object?.startTime?.toString() ?? null,
      endTime: object?.endTime?.toString() ?? null,
      summary: object?.summary?.toString() ?? null,
      url: object?.url?.href ?? null,
      attributedTo: object?.attributionId?.href ?? null,
    },
  };
}

/** Check a delivery with Fedify's verifiers, independently of what its inbox then decides. */
async function inspect(request, body) {
  const ctx = federation.createContext(request, undefined);
  const options = { documentLoader: ctx.documentLoader, contextLoader: ctx.contextLoader };
  const report = { path: new URL(request.url).pathname };
  report.spec = request.headers.has("signature-input") ? "rfc9421" : request.headers.has("signature") ? "draft-cavage" : null;
  const signature = await verifyRequestDetailed(request, options);
  report.httpSignature = signature.verified
    ? { verified: true, keyId: signature.key.id?.href ?? null, owner: signature.key.ownerId?.href ?? null }
    : { verified: false, reason: signature.reason.type };
  let json = null;
  try {
    json = JSON.parse(Buffer.from(body).toString("utf8"));
  } catch {
    report.json = null;
    return report;
  }
  report.type = json.type ?? null;
  report.id = json.id ?? null;
  report.activityProof = await checkProofs(Activity, json, options);
  report.objectProof = json.object && typeof json.object === "object" && "proof" in json.object
    ? await checkProofs(APObject, json.object, options)
    : null;
  report.json = json;
  return report;
}

async function checkProofs(cls, document, options) {
  try {
    const object = await cls.fromJsonLd(document, options);
    const keys = [];
    for await (const proof of object.getProofs(options)) {
      const key = await verifyProof(document, proof, options);
      keys.push(key?.id?.href ?? null);
    }
    const verified = keys.length > 0 && (await verifyObject(cls, document, options)) !== null;
    return { count: keys.length, keys, verified };
  } catch (error) {
    return { count: null, verified: false, error: String(error) };
  }
}

async function toRequest(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) value.forEach((item) => headers.append(name, item));
    else if (value !== undefined) headers.set(name, value);
  }
  const init = { method: req.method, headers };
  if (req.method !== "GET" && req.method !== "HEAD") init.body = body;
  return { request: new Request(new URL(req.url, ORIGIN), init), body };
}

const server = createServer(async (req, res) => {
  try {
    const { request, body } = await toRequest(req);
    const inboxPost = req.method === "POST" && request.url.endsWith("/inbox");
    const report = inboxPost ? await inspect(request.clone(), body) : null;
    const response = await federation.fetch(request, {
      contextData: undefined,
      onNotFound: () => new Response("Not found", { status: 404 }),
      onNotAcceptable: () => new Response("Not acceptable", { status: 406 }),
    });
    const answer = Buffer.from(await response.arrayBuffer());
    if (report) {
      report.status = response.status;
      report.answer = answer.toString("utf8").slice(0, 500);
      emit({ report });
    }
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(answer);
  } catch (error) {
    emit({ log: `request failed: ${error?.stack ?? error}` });
    res.writeHead(500);
    res.end(String(error));
  }
});

function context() {
  return federation.createContext(new URL(ORIGIN), undefined);
}

function eventObject(ctx, spec) {
  const id = new URL(`${ORIGIN}/events/${spec.slug}`);
  return new Event({
    id,
    url: id,
    attribution: ctx.getActorUri("publisher"),
    name: spec.name,
    content: spec.content,
    startTime: Temporal.Instant.from(spec.startTime),
    endTime: spec.endTime ? Temporal.Instant.from(spec.endTime) : null,
    location: new Place({ name: spec.place, latitude: spec.latitude, longitude: spec.longitude }),
    published: Temporal.Instant.from(spec.published),
    updated: spec.updated ? Temporal.Instant.from(spec.updated) : null,
    to: PUBLIC_COLLECTION,
  });
}

function activityFor(ctx, kind, spec) {
  const actor = ctx.getActorUri("publisher");
  const id = new URL(`${ORIGIN}/activities/${randomUUID()}`);
  if (kind === "Delete") {
    return new Delete({ id, actor, to: PUBLIC_COLLECTION, object: new Tombstone({ id: new URL(`${ORIGIN}/events/${spec.slug}`) }) });
  }
  const Kind = kind === "Create" ? Create : Update;
  return new Kind({ id, actor, to: PUBLIC_COLLECTION, object: eventObject(ctx, spec) });
}

const commands = {
  async follow({ identifier, target }) {
    const ctx = context();
    const actor = await ctx.lookupObject(target);
    if (!isActor(actor)) throw new Error(`${target} did not resolve to an actor`);
    await ctx.sendActivity(
      { identifier },
      actor,
      new Follow({ id: new URL(`${ORIGIN}/follows/${randomUUID()}`), actor: ctx.getActorUri(identifier), object: actor.id }),
    );
    return { actor: actor.id.href, inbox: actor.inboxId?.href ?? null, type: actor.constructor.name };
  },

  async publish({ kind, event }) {
    const ctx = context();
    const activity = activityFor(ctx, kind, event);
    for (const follower of followers.values()) {
      await ctx.sendActivity({ identifier: "publisher" }, follower, activity);
    }
    return { id: activity.id.href, followers: [...followers.keys()] };
  },

  /** A delivery signed by the publisher, then altered in transit: the receiver must refuse it. */
  async tampered({ inbox, event }) {
    const ctx = context();
    const activity = activityFor(ctx, "Create", event);
    const body = JSON.stringify(await activity.toJsonLd({ format: "compact", contextLoader: ctx.contextLoader }));
    const [rsa] = await ctx.getActorKeyPairs("publisher");
    const signed = await signRequest(
      new Request(inbox, { method: "POST", headers: { "Content-Type": "application/activity+json" }, body }),
      rsa.privateKey,
      rsa.keyId,
      { spec: "rfc9421" },
    );
    const headers = Object.fromEntries(signed.headers);
    const forged = body.replace(event.name, `${event.name} (falsifié)`);
    const response = await fetch(inbox, { method: "POST", headers, body: forged });
    return { status: response.status, body: (await response.text()).slice(0, 500) };
  },

  async actor({ identifier }) {
    return { id: context().getActorUri(identifier).href };
  },
};

const lines = createInterface({ input: process.stdin, terminal: false });
lines.on("close", () => {
  server.close();
  process.exit(0);
});

server.listen(PORT, "127.0.0.1", () => emit({ ready: ORIGIN }));

for await (const line of lines) {
  if (!line.trim()) continue;
  let id = null;
  try {
    const message = JSON.parse(line);
    id = message.id;
    const handler = commands[message.command];
    if (!handler) throw new Error(`unknown command ${message.command}`);
    emit({ id, result: await handler(message.args ?? {}) });
  } catch (error) {
    emit({ id, error: String(error?.stack ?? error) });
  }
}
