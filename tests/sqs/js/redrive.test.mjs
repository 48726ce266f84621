// Dead-letter queues and redrive through @aws-sdk/client-sqs against a real spoold: the move
// after maxReceiveCount, ListDeadLetterSourceQueues, and message move tasks.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  CancelMessageMoveTaskCommand,
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ListDeadLetterSourceQueuesCommand,
  ListMessageMoveTasksCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SetQueueAttributesCommand,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs';

import {
  expectSqsError, makeClient, md5OfAttributes, queueArn, receiveCount, startSpoold, waitFor, useSpoold,
} from './helpers.mjs';

let spoold;
let sqs;

useSpoold((started, client) => {
  spoold = started;
  sqs = client;
});

const create = async (QueueName, Attributes) =>
  (await sqs.send(new CreateQueueCommand({ QueueName, Attributes }))).QueueUrl;

const redrivePolicy = (dlqName, maxReceiveCount) =>
  JSON.stringify({ deadLetterTargetArn: queueArn(dlqName), maxReceiveCount });

const receive = (QueueUrl, input = {}) => sqs.send(new ReceiveMessageCommand({ QueueUrl, ...input }));

const visibleCount = async (QueueUrl) => Number((await sqs.send(new GetQueueAttributesCommand({
  QueueUrl, AttributeNames: ['ApproximateNumberOfMessages'],
}))).Attributes.ApproximateNumberOfMessages);

// Creates source -> DLQ with maxReceiveCount 1 and dead-letters `bodies` into the DLQ: a
// receive with VisibilityTimeout 0 is one receive, the next one moves the message.
async function deadLetter(prefix, bodies) {
  const dlqUrl = await create(`${prefix}-dlq`);
  const srcUrl = await create(`${prefix}-src`, { RedrivePolicy: redrivePolicy(`${prefix}-dlq`, 1) });
  const sent = [];
  for (const body of bodies) sent.push(await sqs.send(new SendMessageCommand({ QueueUrl: srcUrl, MessageBody: body })));
  await receiveCount(sqs, srcUrl, bodies.length, { visibility: 0, timeoutMs: 5000 });
  for (let i = 0; i < 2 * bodies.length && (await visibleCount(dlqUrl)) < bodies.length; i++) {
    await receive(srcUrl, { MaxNumberOfMessages: 10, VisibilityTimeout: 0 });
  }
  await waitFor(`${bodies.length} messages in ${prefix}-dlq`, async () => (await visibleCount(dlqUrl)) === bodies.length,
    { timeoutMs: 5000 });
  return { dlqUrl, srcUrl, dlqArn: queueArn(`${prefix}-dlq`), srcArn: queueArn(`${prefix}-src`), sent };
}

async function waitForTask(sourceArn, status, timeoutMs = 20000) {
  return waitFor(`the move task on ${sourceArn} to be ${status}`, async () => {
    const out = await sqs.send(new ListMessageMoveTasksCommand({ SourceArn: sourceArn }));
    const latest = out.Results?.[0];
    return latest?.Status === status && latest;
  }, { timeoutMs, intervalMs: 200 });
}

describe('dead-letter queues', { timeout: 60000 }, () => {
  it('moves a message after maxReceiveCount receives, with DeadLetterQueueSourceArn', async () => {
    const dlqUrl = await create('dl-basic-dlq');
    const srcUrl = await create('dl-basic-src', { RedrivePolicy: redrivePolicy('dl-basic-dlq', 2), VisibilityTimeout: '1' });
    const policy = JSON.parse((await sqs.send(new GetQueueAttributesCommand({
      QueueUrl: srcUrl, AttributeNames: ['RedrivePolicy'],
    }))).Attributes.RedrivePolicy);
    assert.equal(policy.deadLetterTargetArn, queueArn('dl-basic-dlq'));
    assert.equal(Number(policy.maxReceiveCount), 2);

    const attributes = { kind: { DataType: 'String', StringValue: 'poison' } };
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: srcUrl, MessageBody: 'poison pill', MessageAttributes: attributes }));
    const firstReceive = await receive(srcUrl, { VisibilityTimeout: 0, MessageSystemAttributeNames: ['All'] });
    assert.equal(firstReceive.Messages[0].Attributes.ApproximateReceiveCount, '1');
    const sentTimestamp = firstReceive.Messages[0].Attributes.SentTimestamp;
    const secondReceive = await receive(srcUrl, { VisibilityTimeout: 0, MessageSystemAttributeNames: ['All'] });
    assert.equal(secondReceive.Messages[0].Attributes.ApproximateReceiveCount, '2');
    // The third receive finds the count at maxReceiveCount and moves the message instead.
    assert.equal((await receive(srcUrl, { VisibilityTimeout: 0 })).Messages, undefined);

    const [moved] = await receiveCount(sqs, dlqUrl, 1, {
      MessageSystemAttributeNames: ['All'], MessageAttributeNames: ['All'], timeoutMs: 5000,
    });
    assert.equal(moved.Body, 'poison pill');
    assert.equal(moved.Attributes.DeadLetterQueueSourceArn, queueArn('dl-basic-src'));
    assert.equal(moved.Attributes.SentTimestamp, sentTimestamp, 'SentTimestamp survives the move');
    assert.equal(moved.Attributes.ApproximateReceiveCount, '3', 'the receive count is not reset');
    assert.equal(moved.MD5OfMessageAttributes, md5OfAttributes(attributes));
    assert.equal(moved.MessageAttributes.kind.StringValue, 'poison');
    assert.equal(moved.MessageId, sent.MessageId, 'the move keeps the MessageId');
  });

  it('removes a redrive policy set to an empty string', async () => {
    await create('dl-remove-dlq');
    const srcUrl = await create('dl-remove-src', { RedrivePolicy: redrivePolicy('dl-remove-dlq', 3) });
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: srcUrl, Attributes: { RedrivePolicy: '' } }));
    const attrs = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: srcUrl, AttributeNames: ['All'] }))).Attributes;
    assert.equal(attrs.RedrivePolicy, undefined);
  });

  it('lists the source queues of a dead-letter queue, with pagination', async () => {
    const dlqUrl = await create('dl-list-dlq');
    const sources = [];
    for (const name of ['dl-list-src-a', 'dl-list-src-b']) {
      sources.push(await create(name, { RedrivePolicy: redrivePolicy('dl-list-dlq', 5) }));
    }
    await create('dl-list-unrelated');
    const all = await sqs.send(new ListDeadLetterSourceQueuesCommand({ QueueUrl: dlqUrl }));
    assert.deepEqual([...all.queueUrls].sort(), [...sources].sort());
    assert.equal(all.NextToken, undefined);

    const first = await sqs.send(new ListDeadLetterSourceQueuesCommand({ QueueUrl: dlqUrl, MaxResults: 1 }));
    assert.equal(first.queueUrls.length, 1);
    assert.equal(typeof first.NextToken, 'string');
    const second = await sqs.send(new ListDeadLetterSourceQueuesCommand({
      QueueUrl: dlqUrl, MaxResults: 1, NextToken: first.NextToken,
    }));
    assert.equal(second.queueUrls.length, 1);
    assert.deepEqual([...first.queueUrls, ...second.queueUrls].sort(), [...sources].sort());

    const none = await sqs.send(new ListDeadLetterSourceQueuesCommand({ QueueUrl: sources[0] }));
    assert.deepEqual(none.queueUrls ?? [], []);
  });
});

describe('message move tasks', { timeout: 60000 }, () => {
  it('redrives a dead-letter queue back to the source queue and reports the task', async () => {
    const bodies = ['r-1', 'r-2', 'r-3'];
    const { dlqUrl, srcUrl, dlqArn, sent } = await deadLetter('mv-back', bodies);
    const startedAt = Date.now();
    const started = await sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlqArn, MaxNumberOfMessagesPerSecond: 1 }));
    assert.match(started.TaskHandle ?? '', /\S/);

    // At one message per second the task is still running: a second one is refused.
    const running = await sqs.send(new ListMessageMoveTasksCommand({ SourceArn: dlqArn }));
    if (running.Results[0].Status === 'RUNNING') {
      assert.equal(running.Results[0].TaskHandle, started.TaskHandle);
    }
    await expectSqsError(sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlqArn })),
      { name: 'InvalidParameterValue', code: 'InvalidParameterValue', status: 400 });

    const done = await waitForTask(dlqArn, 'COMPLETED');
    assert.equal(done.SourceArn, dlqArn);
    assert.equal(done.DestinationArn, undefined, 'no destination was given');
    assert.equal(done.TaskHandle, undefined, 'handles are shown only while RUNNING');
    assert.equal(done.MaxNumberOfMessagesPerSecond, 1);
    assert.equal(Number(done.ApproximateNumberOfMessagesMoved), 3);
    assert.equal(Number(done.ApproximateNumberOfMessagesToMove), 3);
    assert.ok(Number(done.StartedTimestamp) >= startedAt - 5000 && Number(done.StartedTimestamp) <= Date.now(),
      `StartedTimestamp ${done.StartedTimestamp} is epoch milliseconds`);

    const back = await receiveCount(sqs, srcUrl, 3, { timeoutMs: 5000 });
    assert.deepEqual(back.map((m) => m.Body).sort(), bodies);
    const oldIds = new Set(sent.map((s) => s.MessageId));
    for (const message of back) assert.ok(!oldIds.has(message.MessageId), 'a redriven message is a new message');
    assert.equal(await visibleCount(dlqUrl), 0);
  });

  it('redrives to an explicit destination queue', async () => {
    const { dlqArn } = await deadLetter('mv-dest', ['d-1', 'd-2']);
    const destUrl = await create('mv-dest-target');
    await sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlqArn, DestinationArn: queueArn('mv-dest-target') }));
    const done = await waitForTask(dlqArn, 'COMPLETED');
    assert.equal(done.DestinationArn, queueArn('mv-dest-target'));
    const got = await receiveCount(sqs, destUrl, 2, { timeoutMs: 5000 });
    assert.deepEqual(got.map((m) => m.Body).sort(), ['d-1', 'd-2']);
  });

  it('cancels a running task, leaving the rest in the dead-letter queue', async () => {
    const bodies = ['c-1', 'c-2', 'c-3', 'c-4', 'c-5', 'c-6'];
    const { dlqUrl, dlqArn } = await deadLetter('mv-cancel', bodies);
    const { TaskHandle } = await sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlqArn, MaxNumberOfMessagesPerSecond: 1 }));
    const cancelled = await sqs.send(new CancelMessageMoveTaskCommand({ TaskHandle }));
    assert.ok(Number(cancelled.ApproximateNumberOfMessagesMoved) < bodies.length);
    const task = await waitForTask(dlqArn, 'CANCELLED');
    assert.ok(Number(task.ApproximateNumberOfMessagesMoved) < bodies.length);
    assert.ok((await visibleCount(dlqUrl)) > 0, 'messages not yet moved stay in the DLQ');
  });

  it('rejects bad move task requests with the documented errors', async () => {
    await create('mv-plain');
    await expectSqsError(sqs.send(new StartMessageMoveTaskCommand({ SourceArn: queueArn('mv-plain') })),
      { name: 'InvalidParameterValue', code: 'InvalidParameterValue', status: 400 });
    await expectSqsError(sqs.send(new StartMessageMoveTaskCommand({ SourceArn: queueArn('mv-no-such-queue') })),
      { name: 'ResourceNotFoundException', code: 'ResourceNotFoundException', status: 404 });
    await expectSqsError(sqs.send(new CancelMessageMoveTaskCommand({ TaskHandle: 'foobared' })),
      { name: 'InvalidParameterValue', code: 'InvalidParameterValue', status: 400 });
    // Handles are opaque, so an unknown task needs one in the form spoold issues,
    // base64("<task id>:<source queue>"), with an id no task has.
    const unknown = Buffer.from(`${'9'.repeat(16)}:mv-plain`).toString('base64');
    await expectSqsError(sqs.send(new CancelMessageMoveTaskCommand({ TaskHandle: unknown })),
      { name: 'ResourceNotFoundException', code: 'ResourceNotFoundException', status: 404 });
  });
});
