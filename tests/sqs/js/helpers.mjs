// Shared plumbing for the @aws-sdk/client-sqs suites: a real spoold child on 127.0.0.1
// port 0, a client aimed at it, and the assertions every file needs.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';

export { sleep };

export const ACCOUNT = '000000000000';
export const REGION = 'us-east-1';

const READY = /spoold ready: grpc=(\S+) http=(\S+)/;
// Kept for the failure message when spoold dies; the tail is what matters.
const OUTPUT_LIMIT = 64 * 1024;

export class Spoold {
  constructor(child, dir, httpAddress) {
    this.child = child;
    this.dir = dir;
    this.httpAddress = httpAddress;
    this.output = '';
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        resolve({ code: child.exitCode, signal: child.signalCode });
      } else {
        child.once('exit', (code, signal) => resolve({ code, signal }));
      }
    });
  }

  get endpoint() {
    return `http://${this.httpAddress}`;
  }

  // SIGTERM by pid, then SIGKILL if it does not finish in time; returns the exit code
  // (null when it had to be killed) and removes the data directory.
  async stop() {
    let result;
    if (this.child.exitCode === null && this.child.signalCode === null) {
      process.kill(this.child.pid, 'SIGTERM');
      // Unreferenced, so a pending grace timer does not keep the test process alive.
      result = await Promise.race([this.exited, sleep(30000, null, { ref: false })]);
      if (result === null) {
        process.kill(this.child.pid, 'SIGKILL');
        await this.exited;
        result = { code: null, signal: 'SIGKILL' };
      }
    } else {
      result = await this.exited;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    return result;
  }
}

// Starts spoold with a fresh data directory and waits for its startup line. The binary comes
// from $SPOOLD so the suite always tests the build it was run against.
export async function startSpoold(extraArgs = []) {
  const binary = process.env.SPOOLD;
  if (!binary) throw new Error('SPOOLD must name the spoold binary to test');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-sqs-js-'));
  const args = ['--data-dir', path.join(dir, 'data'), '--grpc-listen', '127.0.0.1:0',
    '--http-listen', '127.0.0.1:0', ...extraArgs];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let daemon = null;
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`spoold not ready within 30 s:\n${output}`)), 30000);
    // Both streams are drained for the whole run: a full pipe would block spoold's logging.
    const onData = (chunk) => {
      output = (output + chunk).slice(-OUTPUT_LIMIT);
      if (daemon) daemon.output = output;
      const match = READY.exec(output);
      if (match && !daemon) {
        clearTimeout(timer);
        resolve(match[2]);
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`spoold exited (${code ?? signal}) before it was ready:\n${output}`));
    });
  }).catch((err) => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  daemon = new Spoold(child, dir, address);
  daemon.output = output;
  return daemon;
}

export const DUMMY_CREDENTIALS = { accessKeyId: 'AKIDDUMMY', secretAccessKey: 'dummy-secret' };

// An explicit endpoint keeps every request on spoold whatever host the QueueUrl names; one
// attempt so an error is seen as the server sent it, not after retries.
export function makeClient(endpoint, credentials = DUMMY_CREDENTIALS, extra = {}) {
  return new SQSClient({
    endpoint,
    region: REGION,
    credentials,
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 5000, requestTimeout: 40000 },
    ...extra,
  });
}

export function queueArn(name, account = ACCOUNT, region = REGION) {
  return `arn:aws:sqs:${region}:${account}:${name}`;
}

// Awaits a call that must fail and checks the short shape name, the legacy Query code (from
// x-amzn-query-error) and the HTTP status together, so a failure shows all three.
export async function expectSqsError(promise, { name, code, status }) {
  let error = null;
  let result;
  try {
    result = await promise;
  } catch (err) {
    error = err;
  }
  assert.ok(error, `expected ${name} (${code}, HTTP ${status}) but the call succeeded: ${JSON.stringify(result)}`);
  assert.deepEqual(
    { name: error.name, code: error.Code, status: error.$metadata?.httpStatusCode },
    { name, code, status },
    `unexpected error: ${error.name}: ${error.message}`,
  );
  return error;
}

// MD5OfMessageAttributes / MD5OfMessageSystemAttributes as SQS computes them: names sorted,
// each name, type and value length-prefixed (4 bytes, big-endian), 1 for string values and
// 2 for binary ones.
export function md5OfAttributes(attributes) {
  const parts = [];
  const lengthPrefixed = (bytes) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    parts.push(length, bytes);
  };
  const names = Object.keys(attributes).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const name of names) {
    const value = attributes[name];
    lengthPrefixed(Buffer.from(name, 'utf8'));
    lengthPrefixed(Buffer.from(value.DataType, 'utf8'));
    if (value.StringValue !== undefined) {
      parts.push(Buffer.from([1]));
      lengthPrefixed(Buffer.from(value.StringValue, 'utf8'));
    } else {
      parts.push(Buffer.from([2]));
      lengthPrefixed(Buffer.from(value.BinaryValue));
    }
  }
  return crypto.createHash('md5').update(Buffer.concat(parts)).digest('hex');
}

export function md5(text) {
  return crypto.createHash('md5').update(Buffer.from(text, 'utf8')).digest('hex');
}

export function sha256(text) {
  return crypto.createHash('sha256').update(Buffer.from(text, 'utf8')).digest('hex');
}

// Polls until check() returns a truthy value, failing after timeoutMs.
export async function waitFor(what, check, { timeoutMs = 10000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

// Receives until `count` messages arrived (or fails after timeoutMs); does not delete them.
export async function receiveCount(client, queueUrl, count, { timeoutMs = 10000, visibility = 30, ...extra } = {}) {
  const messages = [];
  const deadline = Date.now() + timeoutMs;
  while (messages.length < count) {
    if (Date.now() > deadline) {
      assert.fail(`received ${messages.length} of ${count} messages from ${queueUrl} within ${timeoutMs} ms`);
    }
    const out = await client.send(new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: Math.min(10, count - messages.length),
      WaitTimeSeconds: 1,
      VisibilityTimeout: visibility,
      ...extra,
    }));
    messages.push(...(out.Messages ?? []));
  }
  return messages;
}

export function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

// One spoold for the calling test file: started before its tests with a client aimed at it
// (both handed to `use`), stopped after them, with a clean exit asserted.
export function useSpoold(use, extraArgs = []) {
  let spoold;
  let sqs;
  before(async () => {
    spoold = await startSpoold(extraArgs);
    sqs = makeClient(spoold.endpoint);
    use(spoold, sqs);
  });
  after(async () => {
    sqs?.destroy();
    if (spoold) {
      const { code, signal } = await spoold.stop();
      assert.equal(code, 0, `spoold exited with ${code ?? signal}\n${spoold.output}`);
    }
  });
}
