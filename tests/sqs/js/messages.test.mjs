// Standard-queue messaging through @aws-sdk/client-sqs against a real spoold: message
// attributes and their MD5s, visibility, long polling, delays and batches with partial
// failures. The SDK itself rejects a wrong MD5OfMessageBody on every send and receive.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';

import {
  expectSqsError, makeClient, md5, md5OfAttributes, receiveCount, sleep, startSpoold, waitFor, useSpoold,
} from './helpers.mjs';

let spoold;
let sqs;

useSpoold((started, client) => {
  spoold = started;
  sqs = client;
});

const create = async (QueueName, Attributes) =>
  (await sqs.send(new CreateQueueCommand({ QueueName, Attributes }))).QueueUrl;

const receive = (QueueUrl, input = {}) => sqs.send(new ReceiveMessageCommand({ QueueUrl, ...input }));

const counts = async (QueueUrl) => (await sqs.send(new GetQueueAttributesCommand({
  QueueUrl,
  AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible',
    'ApproximateNumberOfMessagesDelayed'],
}))).Attributes;

const bytes = (...values) => Uint8Array.from(values);

// Every kind of attribute value: plain and custom-suffixed types of all three transports.
const ATTRIBUTES = {
  str: { DataType: 'String', StringValue: 'héllo wörld ✓' },
  num: { DataType: 'Number', StringValue: '-12.5e3' },
  bin: { DataType: 'Binary', BinaryValue: bytes(0, 1, 2, 0xfe, 0xff) },
  'cust.str': { DataType: 'String.custom', StringValue: 'custom string' },
  'cust.num': { DataType: 'Number.int', StringValue: '42' },
  'cust.bin': { DataType: 'Binary.gif', BinaryValue: bytes(0x47, 0x49, 0x46, 0x38, 0x39, 0x61) },
};

// What the SDK hands back for an attribute map: binary values as Uint8Array.
function normalized(attributes) {
  return Object.fromEntries(Object.entries(attributes ?? {}).map(([name, value]) => [name, {
    DataType: value.DataType,
    ...(value.StringValue !== undefined ? { StringValue: value.StringValue } : {}),
    ...(value.BinaryValue !== undefined ? { BinaryValue: Buffer.from(value.BinaryValue).toString('base64') } : {}),
  }]));
}

describe('MD5OfMessageAttributes', () => {
  it('matches the published vectors (checks the reference implementation used below)', () => {
    const attrib1 = { attribName1: { DataType: 'String', StringValue: 'attribValue 1' } };
    const number = {
      customNumberTypeAttrib: { DataType: 'Number.float', StringValue: '4563442423554324324264524243.32543234' },
    };
    const binary = { binaryAttribute: { DataType: 'Binary', BinaryValue: Buffer.from('Hello binary world!') } };
    assert.equal(md5OfAttributes(attrib1), '19e27d4e946b072f3f58da80d94fd778');
    assert.equal(md5OfAttributes(number), '9fe1b90bbd9965bdf77bac517c7d2495');
    assert.equal(md5OfAttributes(binary), '31a92b15d92f8db860eda32aceb656c3');
    assert.equal(md5OfAttributes({ ...binary, ...attrib1, ...number }), 'c932db14a896c663f83c260297d594ff');
    assert.equal(md5OfAttributes({ MyAttribute: { DataType: 'String', StringValue: 'foobar' } }),
      'adb59cd4678ea5a855436b949cd07ab6');
    assert.equal(md5('hello'), '5d41402abc4b2a76b9719d911017c592');
    assert.equal(md5('message-1'), '3d6b824fd8c1520e9a047d21fee6fb1f');
  });

  it('is what spoold returns for the published vectors, on send and on receive', async () => {
    const url = await create('md5-vectors');
    const attributes = {
      attribName1: { DataType: 'String', StringValue: 'attribValue 1' },
      customNumberTypeAttrib: { DataType: 'Number.float', StringValue: '4563442423554324324264524243.32543234' },
      binaryAttribute: { DataType: 'Binary', BinaryValue: Buffer.from('Hello binary world!') },
    };
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'message-1', MessageAttributes: attributes }));
    assert.equal(sent.MD5OfMessageBody, '3d6b824fd8c1520e9a047d21fee6fb1f');
    assert.equal(sent.MD5OfMessageAttributes, 'c932db14a896c663f83c260297d594ff');
    const [message] = await receiveCount(sqs, url, 1, { MessageAttributeNames: ['All'] });
    assert.equal(message.MD5OfBody, '3d6b824fd8c1520e9a047d21fee6fb1f');
    assert.equal(message.MD5OfMessageAttributes, 'c932db14a896c663f83c260297d594ff');
  });
});

describe('standard messaging', { timeout: 60000 }, () => {
  it('round-trips a body with every kind of message attribute', async () => {
    const url = await create('std-attrs');
    const body = 'Grüße, 世界 😀 <xml & "quotes">\n\ttab';
    const notBefore = Date.now();
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: body, MessageAttributes: ATTRIBUTES }));
    assert.match(sent.MessageId, /\S/);
    assert.equal(sent.MD5OfMessageBody, md5(body));
    assert.equal(sent.MD5OfMessageAttributes, md5OfAttributes(ATTRIBUTES));
    assert.equal(sent.SequenceNumber, undefined, 'no sequence numbers on standard queues');

    const [message] = await receiveCount(sqs, url, 1, {
      MessageAttributeNames: ['All'], MessageSystemAttributeNames: ['All'],
    });
    assert.equal(message.MessageId, sent.MessageId);
    assert.equal(message.Body, body);
    assert.equal(message.MD5OfBody, md5(body));
    assert.deepEqual(normalized(message.MessageAttributes), normalized(ATTRIBUTES));
    assert.equal(message.MD5OfMessageAttributes, md5OfAttributes(ATTRIBUTES));
    assert.match(message.ReceiptHandle, /\S/);
    const sentTimestamp = Number(message.Attributes.SentTimestamp);
    assert.ok(sentTimestamp >= notBefore - 5000 && sentTimestamp <= Date.now() + 5000,
      `SentTimestamp ${message.Attributes.SentTimestamp} is epoch milliseconds`);
    assert.equal(message.Attributes.ApproximateReceiveCount, '1');
    assert.ok(Number(message.Attributes.ApproximateFirstReceiveTimestamp) >= sentTimestamp);
  });

  it('returns only the selected attributes, with the MD5 over that subset', async () => {
    const url = await create('std-attr-select');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'subset', MessageAttributes: ATTRIBUTES }));

    const byName = await receive(url, { MessageAttributeNames: ['num', 'bin'], VisibilityTimeout: 0 });
    const subset = { num: ATTRIBUTES.num, bin: ATTRIBUTES.bin };
    assert.deepEqual(normalized(byName.Messages[0].MessageAttributes), normalized(subset));
    assert.equal(byName.Messages[0].MD5OfMessageAttributes, md5OfAttributes(subset));

    const byPrefix = await receive(url, { MessageAttributeNames: ['cust.*'], VisibilityTimeout: 0 });
    const custom = { 'cust.str': ATTRIBUTES['cust.str'], 'cust.num': ATTRIBUTES['cust.num'], 'cust.bin': ATTRIBUTES['cust.bin'] };
    assert.deepEqual(normalized(byPrefix.Messages[0].MessageAttributes), normalized(custom));
    assert.equal(byPrefix.Messages[0].MD5OfMessageAttributes, md5OfAttributes(custom));

    const none = await receive(url, { VisibilityTimeout: 0 });
    assert.deepEqual(none.Messages[0].MessageAttributes ?? {}, {});
    assert.equal(none.Messages[0].MD5OfMessageAttributes, undefined, 'no digest without attributes');
    assert.deepEqual(none.Messages[0].Attributes ?? {}, {}, 'no system attributes unless asked for');

    const some = await receive(url, { MessageSystemAttributeNames: ['ApproximateReceiveCount'], VisibilityTimeout: 0 });
    assert.deepEqual(some.Messages[0].Attributes, { ApproximateReceiveCount: '4' });
  });

  it('carries AWSTraceHeader with its own MD5', async () => {
    const url = await create('std-trace');
    const system = { AWSTraceHeader: { DataType: 'String', StringValue: 'Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1' } };
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'traced', MessageSystemAttributes: system }));
    assert.equal(sent.MD5OfMessageSystemAttributes, md5OfAttributes(system));
    assert.equal(sent.MD5OfMessageAttributes, undefined, 'no user attributes, no digest');
    const [message] = await receiveCount(sqs, url, 1, { MessageSystemAttributeNames: ['AWSTraceHeader'] });
    assert.deepEqual(message.Attributes, { AWSTraceHeader: system.AWSTraceHeader.StringValue });
  });

  it('hides a received message for its visibility timeout, then delivers it again', async () => {
    const url = await create('std-visibility', { VisibilityTimeout: '2' });
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'visible again' }));
    const first = (await receive(url, { MessageSystemAttributeNames: ['ApproximateReceiveCount'] })).Messages;
    assert.equal(first.length, 1);
    assert.equal((await receive(url)).Messages, undefined, 'in flight');
    assert.equal((await counts(url)).ApproximateNumberOfMessagesNotVisible, '1');

    await sleep(2300);
    // Short, so a delete that failed would show as a redelivery below.
    const [second] = await receiveCount(sqs, url, 1, {
      MessageSystemAttributeNames: ['ApproximateReceiveCount'], timeoutMs: 5000, visibility: 2,
    });
    assert.equal(second.MessageId, sent.MessageId);
    assert.equal(second.Attributes.ApproximateReceiveCount, '2');
    assert.notEqual(second.ReceiptHandle, first[0].ReceiptHandle, 'each receive gets a new handle');

    await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: second.ReceiptHandle }));
    // Deleting twice with the same handle succeeds.
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: second.ReceiptHandle }));
    await waitFor('the deleted message to leave the counts', async () => {
      const c = await counts(url);
      return c.ApproximateNumberOfMessages === '0' && c.ApproximateNumberOfMessagesNotVisible === '0';
    }, { timeoutMs: 5000 });
    await sleep(2300);
    assert.equal((await receive(url)).Messages, undefined, 'a deleted message never comes back');
  });

  it('ChangeMessageVisibility(0) releases at once; a longer timeout keeps the message hidden', async () => {
    const url = await create('std-change-visibility');
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'change me' }));
    const [held] = await receiveCount(sqs, url, 1, { visibility: 30 });
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: held.ReceiptHandle, VisibilityTimeout: 0 }));
    const again = await receive(url, { VisibilityTimeout: 1 });
    assert.equal(again.Messages?.[0]?.MessageId, sent.MessageId, 'released by ChangeMessageVisibility(0)');

    await sqs.send(new ChangeMessageVisibilityCommand({
      QueueUrl: url, ReceiptHandle: again.Messages[0].ReceiptHandle, VisibilityTimeout: 10,
    }));
    await sleep(1500);
    assert.equal((await receive(url)).Messages, undefined, 'extended past the 1 s of the receive');
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: again.Messages[0].ReceiptHandle }));
  });

  it('ReceiveMessage VisibilityTimeout=0 leaves the message visible', async () => {
    const url = await create('std-receive-zero');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'peek' }));
    const first = await receive(url, { VisibilityTimeout: 0 });
    assert.equal(first.Messages.length, 1);
    const second = await receive(url, { VisibilityTimeout: 0, MessageSystemAttributeNames: ['ApproximateReceiveCount'] });
    assert.equal(second.Messages[0].MessageId, first.Messages[0].MessageId);
    assert.equal(second.Messages[0].Attributes.ApproximateReceiveCount, '2');
  });

  it('changes the visibility of a batch, reporting bad entries per entry', async () => {
    const url = await create('std-cmv-batch');
    for (const body of ['a', 'b']) await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: body }));
    const held = await receiveCount(sqs, url, 2, { visibility: 30 });
    const out = await sqs.send(new ChangeMessageVisibilityBatchCommand({
      QueueUrl: url,
      Entries: [
        { Id: 'first', ReceiptHandle: held[0].ReceiptHandle, VisibilityTimeout: 0 },
        { Id: 'second', ReceiptHandle: held[1].ReceiptHandle, VisibilityTimeout: 0 },
        { Id: 'garbage', ReceiptHandle: 'garbage', VisibilityTimeout: 0 },
      ],
    }));
    assert.deepEqual(out.Successful.map((e) => e.Id).sort(), ['first', 'second']);
    assert.equal(out.Failed.length, 1);
    assert.equal(out.Failed[0].Id, 'garbage');
    assert.equal(out.Failed[0].Code, 'ReceiptHandleIsInvalid');
    assert.equal(out.Failed[0].SenderFault, true);
    const again = await receiveCount(sqs, url, 2, { timeoutMs: 3000 });
    assert.deepEqual(again.map((m) => m.Body).sort(), ['a', 'b']);
  });

  it('delays a message by DelaySeconds and counts it as delayed meanwhile', async () => {
    const url = await create('std-delay');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'later', DelaySeconds: 2 }));
    assert.equal((await receive(url)).Messages, undefined, 'not visible while delayed');
    assert.equal((await counts(url)).ApproximateNumberOfMessagesDelayed, '1');
    const started = Date.now();
    // A long poll is woken when the delay ends.
    const out = await receive(url, { WaitTimeSeconds: 5 });
    const elapsed = Date.now() - started;
    assert.equal(out.Messages?.[0]?.Body, 'later');
    assert.ok(elapsed < 4500, `delivered ${elapsed} ms into the wait`);
  });
});

describe('long polling', { timeout: 60000 }, () => {
  it('returns promptly when a message is sent during the wait', async () => {
    const url = await create('lp-send');
    const started = Date.now();
    const polling = receive(url, { WaitTimeSeconds: 5 });
    await sleep(500);
    // Other requests are served while the poll is parked.
    const looked = Date.now();
    await sqs.send(new GetQueueUrlCommand({ QueueName: 'lp-send' }));
    assert.ok(Date.now() - looked < 2500, 'a parked long poll does not block other requests');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'wake up' }));
    const out = await polling;
    const elapsed = Date.now() - started;
    assert.equal(out.Messages?.[0]?.Body, 'wake up');
    assert.ok(elapsed < 4000, `answered ${elapsed} ms into a 5 s wait`);
  });

  it('returns no Messages after waiting the full time on an empty queue', async () => {
    const url = await create('lp-empty');
    const started = Date.now();
    const out = await receive(url, { WaitTimeSeconds: 1 });
    const elapsed = Date.now() - started;
    assert.equal(out.Messages, undefined);
    assert.ok(elapsed >= 900 && elapsed < 4000, `waited ${elapsed} ms for WaitTimeSeconds=1`);
  });

  it('uses the queue ReceiveMessageWaitTimeSeconds when the request gives none', async () => {
    const url = await create('lp-queue-default', { ReceiveMessageWaitTimeSeconds: '1' });
    const started = Date.now();
    const out = await receive(url);
    const elapsed = Date.now() - started;
    assert.equal(out.Messages, undefined);
    assert.ok(elapsed >= 900 && elapsed < 4000, `waited ${elapsed} ms with the queue default of 1 s`);
  });

  it('leases nothing to a long poll whose client went away', async () => {
    // A worker stopped mid-poll (a deploy, a crash) must not take the next message with it:
    // hidden for the visibility timeout, and counted as a receive against the DLQ limit.
    const url = await create('lp-abandoned');
    const controller = new AbortController();
    const polling = sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 20 }),
      { abortSignal: controller.signal });
    await sleep(300);
    controller.abort();  // the SDK closes the connection
    await assert.rejects(polling);
    await sleep(200);
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'for someone' }));
    const out = await receive(url, { WaitTimeSeconds: 2, AttributeNames: ['ApproximateReceiveCount'] });
    assert.equal(out.Messages?.[0]?.Body, 'for someone', 'the abandoned long poll leased it');
    assert.equal(out.Messages[0].Attributes.ApproximateReceiveCount, '1');
  });

  it('is woken by ChangeMessageVisibility(0) on an in-flight message', async () => {
    const url = await create('lp-release');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'released' }));
    const [held] = await receiveCount(sqs, url, 1, { visibility: 30 });
    const started = Date.now();
    const polling = receive(url, { WaitTimeSeconds: 5 });
    await sleep(500);
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: held.ReceiptHandle, VisibilityTimeout: 0 }));
    const out = await polling;
    const elapsed = Date.now() - started;
    assert.equal(out.Messages?.[0]?.Body, 'released');
    assert.ok(elapsed < 4000, `answered ${elapsed} ms into a 5 s wait`);
  });
});

describe('batches', { timeout: 60000 }, () => {
  it('sends a batch, failing only the bad entries', async () => {
    const url = await create('batch-send', { MaximumMessageSize: '1024' });
    const entries = [
      { Id: 'ok-1', MessageBody: 'first', MessageAttributes: { a: { DataType: 'String', StringValue: 'x' } } },
      { Id: 'too_big', MessageBody: 'x'.repeat(1025) },
      { Id: 'ok-2', MessageBody: 'second', DelaySeconds: 0 },
      { Id: 'bad-chars', MessageBody: 'bad \u0001 char' },
      { Id: 'ok-3', MessageBody: 'third ✓' },
    ];
    const out = await sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }));
    const ok = Object.fromEntries(out.Successful.map((e) => [e.Id, e]));
    assert.deepEqual(Object.keys(ok).sort(), ['ok-1', 'ok-2', 'ok-3']);
    assert.equal(ok['ok-1'].MD5OfMessageBody, md5('first'));
    assert.equal(ok['ok-1'].MD5OfMessageAttributes, md5OfAttributes(entries[0].MessageAttributes));
    assert.equal(ok['ok-2'].MD5OfMessageAttributes, undefined);
    for (const entry of out.Successful) assert.match(entry.MessageId, /\S/);

    const failed = Object.fromEntries(out.Failed.map((e) => [e.Id, e]));
    assert.deepEqual(Object.keys(failed).sort(), ['bad-chars', 'too_big']);
    assert.equal(failed.too_big.Code, 'InvalidParameterValue');
    assert.equal(failed.too_big.SenderFault, true);
    assert.equal(failed['bad-chars'].Code, 'InvalidMessageContents');
    assert.equal(failed['bad-chars'].SenderFault, true);

    const got = await receiveCount(sqs, url, 3, { MessageAttributeNames: ['All'] });
    assert.deepEqual(got.map((m) => m.Body).sort(), ['first', 'second', 'third ✓']);
    assert.deepEqual(got.map((m) => m.MessageId).sort(), out.Successful.map((e) => e.MessageId).sort());
    assert.equal((await receive(url)).Messages, undefined, 'failed entries were not enqueued');
  });

  it('deletes a batch, failing only the bad receipt handles', async () => {
    const url = await create('batch-delete');
    await sqs.send(new SendMessageBatchCommand({
      QueueUrl: url,
      Entries: [1, 2, 3].map((i) => ({ Id: `m${i}`, MessageBody: `body ${i}` })),
    }));
    const got = await receiveCount(sqs, url, 3);
    const out = await sqs.send(new DeleteMessageBatchCommand({
      QueueUrl: url,
      Entries: [
        { Id: 'd0', ReceiptHandle: got[0].ReceiptHandle },
        { Id: 'd1', ReceiptHandle: got[1].ReceiptHandle },
        { Id: 'broken', ReceiptHandle: 'not-a-receipt-handle' },
        { Id: 'd2', ReceiptHandle: got[2].ReceiptHandle },
      ],
    }));
    assert.deepEqual(out.Successful.map((e) => e.Id).sort(), ['d0', 'd1', 'd2']);
    assert.deepEqual(out.Failed.map((e) => [e.Id, e.Code, e.SenderFault]), [['broken', 'ReceiptHandleIsInvalid', true]]);
    await waitFor('the deleted messages to leave the counts', async () => {
      const c = await counts(url);
      return c.ApproximateNumberOfMessages === '0' && c.ApproximateNumberOfMessagesNotVisible === '0';
    }, { timeoutMs: 5000 });
  });
});
