// SigV4 verification and the configurable account, region base and advertised URL, with a
// spoold started with --sqs-auth sigv4 and a key table.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ListQueuesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';

import { expectSqsError, makeClient, md5OfAttributes, queueArn, startSpoold } from './helpers.mjs';

const ACCOUNT = '123456789012';
const ADVERTISED = 'http://sqs.spool.test:9999';

let spoold;
const clients = [];

function client(accessKeyId, secretAccessKey) {
  const made = makeClient(spoold.endpoint, { accessKeyId, secretAccessKey });
  clients.push(made);
  return made;
}

before(async () => {
  spoold = await startSpoold([
    '--sqs-auth', 'sigv4',
    '--sqs-access-keys', 'AKIDTEST:secret123,AKIDOTHER:other-secret',
    '--sqs-account-id', ACCOUNT,
    '--sqs-advertised-url', ADVERTISED,
  ]);
});

after(async () => {
  for (const made of clients) made.destroy();
  if (spoold) {
    const { code, signal } = await spoold.stop();
    assert.equal(code, 0, `spoold exited with ${code ?? signal}\n${spoold.output}`);
  }
});

describe('SigV4', { timeout: 60000 }, () => {
  it('accepts requests signed with a configured key', async () => {
    const sqs = client('AKIDTEST', 'secret123');
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: 'signed', Attributes: { VisibilityTimeout: '5' } }));
    // Advertised base and account id come from the flags; lookups go by path, not host.
    assert.equal(QueueUrl, `${ADVERTISED}/${ACCOUNT}/signed`);
    const attrs = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }))).Attributes;
    assert.equal(attrs.QueueArn, queueArn('signed', ACCOUNT));

    const attributes = { who: { DataType: 'String', StringValue: 'signed sender ✓' } };
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'signed body ✓', MessageAttributes: attributes }));
    assert.equal(sent.MD5OfMessageAttributes, md5OfAttributes(attributes));
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 2, MessageAttributeNames: ['All'] }));
    assert.equal(out.Messages?.[0]?.Body, 'signed body ✓');
    await sqs.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: out.Messages[0].ReceiptHandle }));

    const other = client('AKIDOTHER', 'other-secret');
    const listed = await other.send(new ListQueuesCommand({ QueueNamePrefix: 'signed' }));
    assert.deepEqual(listed.QueueUrls, [QueueUrl], 'every configured key works');
  });

  it('rejects a wrong secret with SignatureDoesNotMatch', async () => {
    const sqs = client('AKIDTEST', 'not-the-secret');
    await expectSqsError(sqs.send(new ListQueuesCommand({})),
      { name: 'SignatureDoesNotMatch', code: 'SignatureDoesNotMatch', status: 403 });
    await expectSqsError(sqs.send(new CreateQueueCommand({ QueueName: 'never-created' })),
      { name: 'SignatureDoesNotMatch', code: 'SignatureDoesNotMatch', status: 403 });
    // The rejected create did nothing.
    const good = client('AKIDTEST', 'secret123');
    const listed = await good.send(new ListQueuesCommand({ QueueNamePrefix: 'never-created' }));
    assert.deepEqual(listed.QueueUrls ?? [], []);
  });

  it("rejects another key's secret with SignatureDoesNotMatch", async () => {
    const sqs = client('AKIDTEST', 'other-secret');
    await expectSqsError(sqs.send(new ListQueuesCommand({})),
      { name: 'SignatureDoesNotMatch', code: 'SignatureDoesNotMatch', status: 403 });
  });

  it('rejects an unknown access key with InvalidClientTokenId', async () => {
    const sqs = client('AKIDUNKNOWN', 'secret123');
    await expectSqsError(sqs.send(new ListQueuesCommand({})),
      { name: 'InvalidClientTokenId', code: 'InvalidClientTokenId', status: 403 });
  });
});
