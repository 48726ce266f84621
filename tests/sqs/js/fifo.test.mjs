// FIFO queues through @aws-sdk/client-sqs against a real spoold: order within a message
// group, the group lock, deduplication (explicit, content-based, scopes, purge), sequence
// numbers and receive-attempt retries.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';

import { expectSqsError, makeClient, sha256, sleep, startSpoold, useSpoold } from './helpers.mjs';

let spoold;
let sqs;

useSpoold((started, client) => {
  spoold = started;
  sqs = client;
});

const createFifo = async (QueueName, Attributes = {}) =>
  (await sqs.send(new CreateQueueCommand({ QueueName, Attributes: { FifoQueue: 'true', ...Attributes } }))).QueueUrl;

const send = (QueueUrl, MessageGroupId, MessageBody, MessageDeduplicationId) =>
  sqs.send(new SendMessageCommand({ QueueUrl, MessageGroupId, MessageBody, MessageDeduplicationId }));

const receive = (QueueUrl, input = {}) => sqs.send(new ReceiveMessageCommand({
  QueueUrl, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ['All'], ...input,
}));

const remove = (QueueUrl, message) =>
  sqs.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: message.ReceiptHandle }));

// Receives and deletes until `count` messages came (deleting unlocks their groups), in the
// order they were delivered; then checks nothing else is left.
async function drain(url, count, timeoutMs = 5000) {
  const got = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < count) {
    if (Date.now() > deadline) assert.fail(`drained ${got.length} of ${count} messages from ${url}`);
    const out = await receive(url, { WaitTimeSeconds: 1 });
    for (const message of out.Messages ?? []) {
      got.push(message);
      await remove(url, message);
    }
  }
  assert.equal((await receive(url)).Messages, undefined, 'nothing beyond the expected messages');
  return got;
}

const increasing = (numbers) => numbers.every((n, i) => i === 0 || BigInt(numbers[i - 1]) < BigInt(n));

describe('FIFO queues', { timeout: 60000 }, () => {
  it('delivers each group in send order with increasing sequence numbers', async () => {
    const url = await createFifo('fifo-order.fifo');
    const plan = [['g1', 'g1-m1'], ['g2', 'g2-m1'], ['g1', 'g1-m2'], ['g1', 'g1-m3'], ['g2', 'g2-m2']];
    const sent = {};
    for (const [group, body] of plan) {
      const out = await send(url, group, body, `dedup-${body}`);
      assert.match(out.SequenceNumber ?? '', /^\d+$/, 'a FIFO send returns a SequenceNumber');
      sent[body] = out;
    }
    assert.ok(increasing(['g1-m1', 'g1-m2', 'g1-m3'].map((b) => sent[b].SequenceNumber)));
    assert.ok(increasing(['g2-m1', 'g2-m2'].map((b) => sent[b].SequenceNumber)));
    assert.ok(increasing(plan.map(([, b]) => sent[b].SequenceNumber)), 'and across the queue');

    const got = await drain(url, plan.length);
    const bodies = (group) => got.filter((m) => m.Attributes.MessageGroupId === group).map((m) => m.Body);
    assert.deepEqual(bodies('g1'), ['g1-m1', 'g1-m2', 'g1-m3']);
    assert.deepEqual(bodies('g2'), ['g2-m1', 'g2-m2']);
    for (const message of got) {
      const original = sent[message.Body];
      assert.equal(message.MessageId, original.MessageId);
      assert.equal(message.Attributes.SequenceNumber, original.SequenceNumber);
      assert.equal(message.Attributes.MessageDeduplicationId, `dedup-${message.Body}`);
    }
  });

  it('locks a group while one of its messages is in flight', async () => {
    const url = await createFifo('fifo-lock.fifo');
    await send(url, 'g1', 'a', 'a');
    await send(url, 'g1', 'b', 'b');
    await send(url, 'g2', 'c', 'c');

    const first = await receive(url, { MaxNumberOfMessages: 1, VisibilityTimeout: 30 });
    assert.deepEqual(first.Messages.map((m) => m.Body), ['a']);
    const second = await receive(url, { VisibilityTimeout: 30 });
    assert.deepEqual(second.Messages.map((m) => m.Body), ['c'], 'g1 is locked by a, only g2 flows');
    assert.equal((await receive(url)).Messages, undefined, 'both groups locked');

    await remove(url, first.Messages[0]);
    const third = await receive(url, { VisibilityTimeout: 30 });
    assert.deepEqual(third.Messages.map((m) => m.Body), ['b'], 'deleting a unlocks g1');

    await sqs.send(new ChangeMessageVisibilityCommand({
      QueueUrl: url, ReceiptHandle: third.Messages[0].ReceiptHandle, VisibilityTimeout: 0,
    }));
    const fourth = await receive(url, { VisibilityTimeout: 30 });
    assert.deepEqual(fourth.Messages.map((m) => m.Body), ['b'], 'ChangeMessageVisibility(0) unlocks g1');
  });

  it('redelivers in order after a visibility timeout; an expired handle no longer deletes', async () => {
    const url = await createFifo('fifo-expiry.fifo');
    await send(url, 'g', 'x1', 'x1');
    await send(url, 'g', 'x2', 'x2');
    const first = await receive(url, { VisibilityTimeout: 1 });
    assert.deepEqual(first.Messages.map((m) => m.Body), ['x1', 'x2']);
    await sleep(1500);
    const stale = first.Messages[0].ReceiptHandle;
    await expectSqsError(sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: stale })),
      { name: 'InvalidParameterValue', code: 'InvalidParameterValue', status: 400 });
    const again = await receive(url, { VisibilityTimeout: 30 });
    assert.deepEqual(again.Messages.map((m) => m.Body), ['x1', 'x2']);
    assert.deepEqual(again.Messages.map((m) => m.Attributes.ApproximateReceiveCount), ['2', '2']);
  });

  it('drops duplicates of a deduplication id across groups, even after the original was deleted', async () => {
    const url = await createFifo('fifo-dedup.fifo');
    const original = await send(url, 'g1', 'one', 'd1');
    const duplicate = await send(url, 'g1', 'two', 'd1');
    assert.match(duplicate.MessageId, /\S/, 'a duplicate send still succeeds');
    await send(url, 'g2', 'three', 'd1');
    const got = await drain(url, 1);
    assert.deepEqual(got.map((m) => [m.Body, m.MessageId]), [['one', original.MessageId]]);

    await send(url, 'g1', 'four', 'd1');
    assert.equal((await receive(url, { WaitTimeSeconds: 1 })).Messages, undefined, 'still a duplicate after the delete');
  });

  it('deduplicates per group with DeduplicationScope=messageGroup', async () => {
    const url = await createFifo('fifo-scope.fifo', {
      DeduplicationScope: 'messageGroup', FifoThroughputLimit: 'perMessageGroupId',
    });
    await send(url, 'g1', 'one', 'same-id');
    await send(url, 'g2', 'two', 'same-id');
    await send(url, 'g2', 'three', 'same-id');
    const got = await drain(url, 2);
    assert.deepEqual(got.map((m) => m.Body).sort(), ['one', 'two']);
  });

  it('derives the deduplication id from the body with ContentBasedDeduplication', async () => {
    const url = await createFifo('fifo-cbd.fifo', { ContentBasedDeduplication: 'true' });
    await send(url, 'g', 'same');
    await send(url, 'g', 'same');
    await send(url, 'g', 'other');
    await send(url, 'g', 'same', 'explicit-id');
    const got = await drain(url, 3);
    assert.deepEqual(got.map((m) => m.Body), ['same', 'other', 'same']);
    assert.equal(got[0].Attributes.MessageDeduplicationId, sha256('same'));
    assert.equal(got[2].Attributes.MessageDeduplicationId, 'explicit-id', 'an explicit id wins');
  });

  it('forgets deduplication ids on purge', async () => {
    const url = await createFifo('fifo-purge.fifo');
    await send(url, 'g', 'before purge', 'pd');
    await sqs.send(new PurgeQueueCommand({ QueueUrl: url }));
    await send(url, 'g', 'after purge', 'pd');
    const got = await drain(url, 1);
    assert.equal(got[0].Body, 'after purge');
  });

  it('enqueues batch entries in request order', async () => {
    const url = await createFifo('fifo-batch.fifo');
    const out = await sqs.send(new SendMessageBatchCommand({
      QueueUrl: url,
      Entries: ['e1', 'e2', 'e3', 'e4'].map((id) => ({
        Id: id, MessageBody: `body-${id}`, MessageGroupId: 'batch', MessageDeduplicationId: id,
      })),
    }));
    assert.deepEqual(out.Failed ?? [], []);
    const byId = Object.fromEntries(out.Successful.map((e) => [e.Id, e]));
    assert.ok(increasing(['e1', 'e2', 'e3', 'e4'].map((id) => byId[id].SequenceNumber)), 'sequence numbers in entry order');
    const got = await drain(url, 4);
    assert.deepEqual(got.map((m) => m.Body), ['body-e1', 'body-e2', 'body-e3', 'body-e4']);
  });

  it('answers a retried ReceiveRequestAttemptId with the same messages and handles', async () => {
    const url = await createFifo('fifo-attempt.fifo');
    await send(url, 'g', 'r1', 'r1');
    await send(url, 'g', 'r2', 'r2');
    const first = await receive(url, { ReceiveRequestAttemptId: 'attempt-1', VisibilityTimeout: 30 });
    const retry = await receive(url, { ReceiveRequestAttemptId: 'attempt-1', VisibilityTimeout: 30 });
    assert.deepEqual(first.Messages.map((m) => m.Body), ['r1', 'r2']);
    assert.deepEqual((retry.Messages ?? []).map((m) => [m.MessageId, m.ReceiptHandle]),
      first.Messages.map((m) => [m.MessageId, m.ReceiptHandle]));
  });
});
