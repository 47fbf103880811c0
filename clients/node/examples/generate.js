#!/usr/bin/env node
'use strict';
// Streams a completion from herd's core to stdout, piece by piece as it is decoded.
//   HERD_GRPC_HOST=127.0.0.1:50051 node examples/generate.js smollm2:135m "Why is the sky blue?" \
//     --options '{"temperature": 0, "num_predict": 32}'
// --json prints each GenerateResponse as one JSON line instead of the text.

const { parseArgs } = require('node:util');
const { connect, grpc } = require('..');

const USAGE = 'usage: generate.js MODEL PROMPT [--options JSON] [--json]';

function parseCommandLine(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { options: { type: 'string' }, json: { type: 'boolean' } },
  });
  if (positionals.length !== 2) throw new UsageError(USAGE);
  let options;
  try {
    options = values.options === undefined ? undefined : JSON.parse(values.options);
  } catch (err) {
    throw new UsageError(`--options is not JSON: ${err.message}`);
  }
  return { model: positionals[0], prompt: positionals[1], options, json: Boolean(values.json) };
}

class UsageError extends Error {}

function describe(err) {
  const status = Object.keys(grpc.status).find((name) => grpc.status[name] === err.code);
  return status === undefined ? err.message : `${status}: ${err.details}`.trim();
}

async function main() {
  let args;
  try {
    args = parseCommandLine(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`error: ${err.message}\n`);
    return 2;
  }
  const client = connect();
  try {
    for await (const piece of client.generate({ model: args.model, prompt: args.prompt, options: args.options })) {
      process.stdout.write(args.json ? `${JSON.stringify(piece)}\n` : piece.response);
    }
    if (!args.json) process.stdout.write('\n');
    return 0;
  } catch (err) {
    process.stderr.write(`error: ${describe(err)}\n`);
    return 1;
  } finally {
    client.close();
  }
}

main().then((code) => {
  process.exitCode = code;
});
