// Queue management through @aws-sdk/client-sqs (AWS JSON 1.0) against a real spoold:
// create/get/list/delete, attributes and their defaults, purge, tags and permissions.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  AddPermissionCommand,
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  ListQueueTagsCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  RemovePermissionCommand,
  SendMessageCommand,
  SetQueueAttributesCommand,
  SQSClient,
  TagQueueCommand,
  UntagQueueCommand,
} from '@aws-sdk/client-sqs';

import {
  ACCOUNT, DUMMY_CREDENTIALS, REGION, expectSqsError, makeClient, nowSeconds, queueArn, receiveCount, startSpoold, waitFor, useSpoold,
} from './helpers.mjs';

let spoold;
let sqs;

useSpoold((started, client) => {
  spoold = started;
  sqs = client;
});

const create = async (QueueName, Attributes, tags) =>
  (await sqs.send(new CreateQueueCommand({ QueueName, Attributes, tags }))).QueueUrl;

const attributes = async (QueueUrl, AttributeNames = ['All']) =>
  (await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames }))).Attributes ?? {};

const listQueues = async (input) => sqs.send(new ListQueuesCommand(input));

describe('queues', { timeout: 60000 }, () => {
  it('returns queue URLs of the form <advertised>/<account>/<name>', async () => {
    const url = await create('q-url');
    assert.equal(url, `${spoold.endpoint}/${ACCOUNT}/q-url`);
    const got = await sqs.send(new GetQueueUrlCommand({ QueueName: 'q-url' }));
    assert.equal(got.QueueUrl, url);
  });

  it('serves a client without an explicit endpoint at the QueueUrl origin', async () => {
    const url = await create('q-origin');
    const quiet = { debug() {}, info() {}, warn() {}, error() {} };
    // Such a client sends queue-addressed requests to the QueueUrl's host, so the advertised
    // URL must reach spoold.
    const plain = new SQSClient({
      region: REGION, credentials: DUMMY_CREDENTIALS, maxAttempts: 1, logger: quiet,
      requestHandler: { connectionTimeout: 5000, requestTimeout: 20000 },
    });
    try {
      await plain.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'via the queue URL' }));
      const out = await plain.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 1 }));
      assert.equal(out.Messages?.[0]?.Body, 'via the queue URL');
    } finally {
      plain.destroy();
    }
  });

  it('creates idempotently and rejects the same name with different attributes', async () => {
    const url = await create('q-idem', { VisibilityTimeout: '5', DelaySeconds: '1' });
    assert.equal(await create('q-idem', { VisibilityTimeout: '5', DelaySeconds: '1' }), url);
    assert.equal(await create('q-idem', { VisibilityTimeout: '5' }), url, 'a subset of equal attributes');
    assert.equal(await create('q-idem'), url, 'no attributes at all');
    await expectSqsError(create('q-idem', { VisibilityTimeout: '6' }),
      { name: 'QueueNameExists', code: 'QueueAlreadyExists', status: 400 });
    // The refused create must not have changed the queue.
    assert.equal((await attributes(url, ['VisibilityTimeout'])).VisibilityTimeout, '5');
  });

  it('resolves a queue given by its bare name instead of a URL', async () => {
    const url = await create('q-bare');
    const byName = await attributes('q-bare', ['QueueArn']);
    assert.deepEqual(byName, { QueueArn: queueArn('q-bare') });
    assert.ok(url.endsWith('/q-bare'));
  });

  it('lists queues by prefix, case-sensitively, with pagination only when MaxResults is given', async () => {
    const urls = [];
    for (const name of ['lst-c', 'lst-a', 'lst-b']) urls.push(await create(name));
    await create('other-lst');
    urls.sort();

    const all = await listQueues({ QueueNamePrefix: 'lst-' });
    assert.deepEqual([...all.QueueUrls].sort(), urls);
    assert.equal(all.NextToken, undefined, 'no NextToken without MaxResults');

    const none = await listQueues({ QueueNamePrefix: 'LST-' });
    assert.deepEqual(none.QueueUrls ?? [], []);

    const first = await listQueues({ QueueNamePrefix: 'lst-', MaxResults: 2 });
    assert.equal(first.QueueUrls.length, 2);
    assert.equal(typeof first.NextToken, 'string');
    const second = await listQueues({ QueueNamePrefix: 'lst-', MaxResults: 2, NextToken: first.NextToken });
    assert.equal(second.QueueUrls.length, 1);
    assert.equal(second.NextToken, undefined, 'no NextToken on the last page');
    assert.deepEqual([...first.QueueUrls, ...second.QueueUrls].sort(), urls);

    const everything = await listQueues({});
    for (const url of urls) assert.ok(everything.QueueUrls.includes(url), `${url} in the full listing`);
  });

  it('reports the default attributes of a new standard queue', async () => {
    const notBefore = nowSeconds();
    const url = await create('q-defaults');
    const attrs = await attributes(url);
    assert.deepEqual(Object.keys(attrs).sort(), [
      'ApproximateNumberOfMessages',
      'ApproximateNumberOfMessagesDelayed',
      'ApproximateNumberOfMessagesNotVisible',
      'CreatedTimestamp',
      'DelaySeconds',
      'LastModifiedTimestamp',
      'MaximumMessageSize',
      'MessageRetentionPeriod',
      'QueueArn',
      'ReceiveMessageWaitTimeSeconds',
      'SqsManagedSseEnabled',
      'VisibilityTimeout',
    ]);
    assert.equal(attrs.ApproximateNumberOfMessages, '0');
    assert.equal(attrs.ApproximateNumberOfMessagesDelayed, '0');
    assert.equal(attrs.ApproximateNumberOfMessagesNotVisible, '0');
    assert.equal(attrs.DelaySeconds, '0');
    assert.equal(attrs.MaximumMessageSize, '1048576');
    assert.equal(attrs.MessageRetentionPeriod, '345600');
    assert.equal(attrs.QueueArn, queueArn('q-defaults'));
    assert.equal(attrs.ReceiveMessageWaitTimeSeconds, '0');
    assert.equal(attrs.SqsManagedSseEnabled, 'true');
    assert.equal(attrs.VisibilityTimeout, '30');
    // Epoch seconds, not milliseconds.
    for (const key of ['CreatedTimestamp', 'LastModifiedTimestamp']) {
      assert.match(attrs[key], /^\d+$/);
      const value = Number(attrs[key]);
      assert.ok(value >= notBefore - 5 && value <= nowSeconds() + 5, `${key}=${attrs[key]}`);
    }
  });

  it('reports the default attributes of a new FIFO queue', async () => {
    const url = await create('q-defaults.fifo', { FifoQueue: 'true' });
    assert.equal(url, `${spoold.endpoint}/${ACCOUNT}/q-defaults.fifo`);
    const attrs = await attributes(url);
    assert.equal(attrs.FifoQueue, 'true');
    assert.equal(attrs.ContentBasedDeduplication, 'false');
    assert.equal(attrs.DeduplicationScope, 'queue');
    assert.equal(attrs.FifoThroughputLimit, 'perQueue');
    assert.equal(attrs.VisibilityTimeout, '30');
    assert.equal(attrs.QueueArn, queueArn('q-defaults.fifo'));
  });

  it('returns only the attributes asked for, and none when none are asked for', async () => {
    const url = await create('q-some-attrs');
    assert.deepEqual(await attributes(url, ['VisibilityTimeout', 'QueueArn']),
      { VisibilityTimeout: '30', QueueArn: queueArn('q-some-attrs') });
    const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url }));
    assert.deepEqual(out.Attributes ?? {}, {});
  });

  it('sets attributes and reads them back', async () => {
    const url = await create('q-set', { VisibilityTimeout: '10' });
    const created = await attributes(url, ['CreatedTimestamp']);
    await sqs.send(new SetQueueAttributesCommand({
      QueueUrl: url,
      Attributes: {
        VisibilityTimeout: '7',
        DelaySeconds: '2',
        MaximumMessageSize: '2048',
        MessageRetentionPeriod: '600',
        ReceiveMessageWaitTimeSeconds: '3',
      },
    }));
    const attrs = await attributes(url);
    assert.equal(attrs.VisibilityTimeout, '7');
    assert.equal(attrs.DelaySeconds, '2');
    assert.equal(attrs.MaximumMessageSize, '2048');
    assert.equal(attrs.MessageRetentionPeriod, '600');
    assert.equal(attrs.ReceiveMessageWaitTimeSeconds, '3');
    assert.ok(Number(attrs.LastModifiedTimestamp) >= Number(created.CreatedTimestamp));

    // A policy document is stored as given and removed with an empty value.
    const policy = JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { AWS: '*' }, Action: 'sqs:SendMessage', Resource: queueArn('q-set') }],
    });
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: { Policy: policy } }));
    assert.deepEqual(JSON.parse((await attributes(url, ['Policy'])).Policy), JSON.parse(policy));
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: { Policy: '' } }));
    assert.equal((await attributes(url)).Policy, undefined);
  });

  it('deletes a queue: it is gone from lookups and listings', async () => {
    const url = await create('q-delete');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'left behind' }));
    await sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
    await expectSqsError(sqs.send(new GetQueueUrlCommand({ QueueName: 'q-delete' })),
      { name: 'QueueDoesNotExist', code: 'AWS.SimpleQueueService.NonExistentQueue', status: 400 });
    await expectSqsError(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'x' })),
      { name: 'QueueDoesNotExist', code: 'AWS.SimpleQueueService.NonExistentQueue', status: 400 });
    const listed = await listQueues({ QueueNamePrefix: 'q-delete' });
    assert.deepEqual(listed.QueueUrls ?? [], []);
    // Within --sqs-recreate-wait-s (default 60) the name stays blocked.
    await expectSqsError(create('q-delete'), {
      name: 'QueueDeletedRecently', code: 'AWS.SimpleQueueService.QueueDeletedRecently', status: 400,
    });
  });

  it('purges visible and in-flight messages, once per purge interval', async () => {
    const url = await create('q-purge');
    for (let i = 0; i < 3; i++) {
      await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: `m${i}` }));
    }
    await receiveCount(sqs, url, 1);
    await sqs.send(new PurgeQueueCommand({ QueueUrl: url }));
    const attrs = await waitFor('the purge to empty the queue', async () => {
      const a = await attributes(url, ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible']);
      return a.ApproximateNumberOfMessages === '0' && a.ApproximateNumberOfMessagesNotVisible === '0' && a;
    }, { timeoutMs: 5000 });
    assert.ok(attrs);
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }));
    assert.equal(out.Messages, undefined);

    await expectSqsError(sqs.send(new PurgeQueueCommand({ QueueUrl: url })), {
      name: 'PurgeQueueInProgress', code: 'AWS.SimpleQueueService.PurgeQueueInProgress', status: 403,
    });
    // The queue keeps working after a refused purge.
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'after purge' }));
    const [message] = await receiveCount(sqs, url, 1);
    assert.equal(message.Body, 'after purge');
  });

  it('tags queues at creation and with TagQueue/UntagQueue', async () => {
    const url = await create('q-tags', undefined, { team: 'a', cost: '' });
    assert.deepEqual((await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }))).Tags, { team: 'a', cost: '' });

    await sqs.send(new TagQueueCommand({ QueueUrl: url, Tags: { env: 'dev', team: 'b' } }));
    assert.deepEqual((await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }))).Tags,
      { team: 'b', env: 'dev', cost: '' });

    await sqs.send(new UntagQueueCommand({ QueueUrl: url, TagKeys: ['team', 'cost', 'never-set'] }));
    assert.deepEqual((await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }))).Tags, { env: 'dev' });

    await sqs.send(new UntagQueueCommand({ QueueUrl: url, TagKeys: ['env'] }));
    assert.deepEqual((await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }))).Tags ?? {}, {});
  });

  it('keeps AddPermission/RemovePermission statements in the Policy attribute', async () => {
    const url = await create('q-perm');
    const arn = queueArn('q-perm');
    await sqs.send(new AddPermissionCommand({
      QueueUrl: url, Label: 'perm1', AWSAccountIds: ['111122223333'], Actions: ['SendMessage', 'ReceiveMessage'],
    }));
    await sqs.send(new AddPermissionCommand({
      QueueUrl: url, Label: 'perm2', AWSAccountIds: ['444455556666'], Actions: ['*'],
    }));
    const policy = JSON.parse((await attributes(url, ['Policy'])).Policy);
    assert.equal(policy.Version, '2008-10-17');
    assert.equal(policy.Id, `${arn}/SQSDefaultPolicy`);
    const bySid = Object.fromEntries(policy.Statement.map((s) => [s.Sid, s]));
    assert.deepEqual(Object.keys(bySid).sort(), ['perm1', 'perm2']);
    const actions = [bySid.perm1.Action].flat().sort();
    assert.deepEqual(actions, ['SQS:ReceiveMessage', 'SQS:SendMessage']);
    assert.deepEqual([bySid.perm2.Action].flat(), ['SQS:*']);
    assert.equal(bySid.perm1.Effect, 'Allow');
    assert.equal(bySid.perm1.Resource, arn);
    assert.match(JSON.stringify(bySid.perm1.Principal), /111122223333/);

    await expectSqsError(sqs.send(new AddPermissionCommand({
      QueueUrl: url, Label: 'perm1', AWSAccountIds: ['111122223333'], Actions: ['SendMessage'],
    })), { name: 'InvalidParameterValue', code: 'InvalidParameterValue', status: 400 });

    await sqs.send(new RemovePermissionCommand({ QueueUrl: url, Label: 'perm1' }));
    const left = JSON.parse((await attributes(url, ['Policy'])).Policy);
    assert.deepEqual(left.Statement.map((s) => s.Sid), ['perm2']);

    await expectSqsError(sqs.send(new RemovePermissionCommand({ QueueUrl: url, Label: 'perm1' })),
      { name: 'InvalidParameterValue', code: 'InvalidParameterValue', status: 400 });
  });
});
