'use strict';
// A small client for herd's gRPC core: herd.v1.Inference and herd.v1.Models, loaded from the repository's
// proto/ at run time, so it never drifts from the server's API.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const DEFAULT_ADDRESS = '127.0.0.1:50051';

const api = grpc.loadPackageDefinition(
  protoLoader.loadSync(['herd/v1/inference.proto', 'herd/v1/models.proto'], {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto files and the Python stubs: num_predict, done_reason
    longs: Number, // int64 fields are nanosecond durations and seeds, exact below 2^53 (104 days)
    enums: String, // done_reason: 'DONE_REASON_STOP'
    defaults: true,
  }),
).herd.v1;

/** The core's address: $HERD_GRPC_HOST, read as the server reads it, or 127.0.0.1:50051. */
function defaultAddress(env = process.env) {
  const value = (env.HERD_GRPC_HOST || '').trim().replace(/^["']+|["']+$/g, '').trim();
  return value || DEFAULT_ADDRESS;
}

class HerdClient {
  /**
   * @param {string} [address] host:port of herd's core; defaults to $HERD_GRPC_HOST or 127.0.0.1:50051.
   * @param {grpc.ChannelCredentials} [credentials] insecure unless given: the core listens in plain text.
   */
  constructor(address = defaultAddress(), credentials = grpc.credentials.createInsecure()) {
    this.address = address;
    this.inference = new api.Inference(address, credentials);
    this.models = new api.Models(address, credentials, { channelOverride: this.inference.getChannel() });
  }

  /**
   * Streams a completion: an async iterable of GenerateResponse; the last one has done === true.
   * Leaving the loop early cancels the generation on the server.
   * @param {{model: string, prompt: string, options?: object, raw?: boolean, format?: string}} request
   * @param {{deadline?: Date|number}} [callOptions] grpc-js call options.
   */
  generate(request, callOptions = {}) {
    return cancelledOnExit(this.inference.Generate(request, callOptions));
  }

  /**
   * Streams a chat reply: an async iterable of ChatResponse (message.content holds each piece).
   * @param {{model: string, messages: {role: string, content: string}[], options?: object}} request
   */
  chat(request, callOptions = {}) {
    return cancelledOnExit(this.inference.Chat(request, callOptions));
  }

  /**
   * Embeds each input; resolves to the vectors, in input order.
   * @param {{model: string, input: string[], dimensions?: number}} request
   * @returns {Promise<number[][]>}
   */
  async embed(request, callOptions = {}) {
    const reply = await unary(this.inference, 'Embed', request, callOptions);
    return reply.embeddings.map((embedding) => embedding.values);
  }

  /** The store's models (ModelSummary: name, size, digest, details, capabilities), newest first. */
  async listModels(callOptions = {}) {
    return (await unary(this.models, 'List', {}, callOptions)).models;
  }

  close() {
    this.inference.close();
  }
}

// grpc-js leaves a call running when its stream is abandoned, so a loop left early would let the server
// generate to the end; cancelling once the loop is left stops it (after the last message it does nothing).
async function* cancelledOnExit(call) {
  try {
    yield* call;
  } finally {
    call.cancel();
  }
}

function unary(stub, method, request, callOptions) {
  return new Promise((resolve, reject) => {
    stub[method](request, callOptions, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

/** A client for the core at `address` (default $HERD_GRPC_HOST or 127.0.0.1:50051). */
function connect(address) {
  return new HerdClient(address);
}

module.exports = { connect, defaultAddress, HerdClient, api, grpc };
