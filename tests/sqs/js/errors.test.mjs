// Bad inputs through @aws-sdk/client-sqs against a real spoold: each must fail with the SQS
// error the SDK maps to the right exception (short name), the legacy Query code from
// x-amzn-query-error, and the HTTP status.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SetQueueAttributesCommand,
} from '@aws-sdk/client-sqs';

import { ACCOUNT, expectSqsError, makeClient, queueArn, receiveCount, startSpoold } from './helpers.mjs';

let spoold;
let sqs;
let url;
let fifoUrl;

const NON_EXISTENT = { name: 'QueueDoesNotExist', code: 'AWS.SimpleQueueService.NonExistentQueue', status: 400 };
const INVALID_PARAMETER = { name: 'InvalidParameterValue', code: 'InvalidParameterValue', status: 400 };
const MISSING_PARAMETER = { name: 'MissingParameter', code: 'MissingParameter', status: 400 };
const INVALID_ATTRIBUTE_NAME = { name: 'InvalidAttributeName', code: 'InvalidAttributeName', status: 400 };
const INVALID_ATTRIBUTE_VALUE = { name: 'InvalidAttributeValue', code: 'InvalidAttributeValue', status: 400 };
const RECEIPT_HANDLE_INVALID = { name: 'ReceiptHandleIsInvalid', code: 'ReceiptHandleIsInvalid', status: 400 };
const INVALID_CONTENTS = { name: 'InvalidMessageContents', code: 'InvalidMessageContents', status: 400 };
const batchError = (name) => ({ name, code: `AWS.SimpleQueueService.${name}`, status: 400 });

const create = async (QueueName, Attributes) =>
  (await sqs.send(new CreateQueueCommand({ QueueName, Attributes }))).QueueUrl;

before(async () => {
  spoold = await startSpoold();
  sqs = makeClient(spoold.endpoint);
  url = await create('err-std');
  fifoUrl = await create('err-fifo.fifo', { FifoQueue: 'true' });
});

after(async () => {
  sqs?.destroy();
  if (spoold) {
    const { code, signal } = await spoold.stop();
    assert.equal(code, 0, `spoold exited with ${code ?? signal}\n${spoold.output}`);
  }
});

const entries = (n, make = (i) => ({ Id: `e${i}`, MessageBody: `body ${i}` })) =>
  Array.from({ length: n }, (_, i) => make(i));

describe('bad inputs', { timeout: 60000 }, () => {
  it('GetQueueUrl of a queue that does not exist', async () => {
    await expectSqsError(sqs.send(new GetQueueUrlCommand({ QueueName: 'no-such-queue' })), NON_EXISTENT);
  });

  it('SendMessage to a queue URL that does not exist', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({
      QueueUrl: `${spoold.endpoint}/${ACCOUNT}/no-such-queue`, MessageBody: 'x',
    })), NON_EXISTENT);
  });

  it('CreateQueue with an unknown attribute name', async () => {
    await expectSqsError(create('err-attr-name', { NoSuchAttribute: '1' }), INVALID_ATTRIBUTE_NAME);
  });

  it('CreateQueue with an out-of-range attribute value', async () => {
    await expectSqsError(create('err-attr-value', { VisibilityTimeout: '43201' }), INVALID_ATTRIBUTE_VALUE);
  });

  it('SetQueueAttributes with a non-numeric value', async () => {
    await expectSqsError(sqs.send(new SetQueueAttributesCommand({
      QueueUrl: url, Attributes: { DelaySeconds: 'soon' },
    })), INVALID_ATTRIBUTE_VALUE);
  });

  it('GetQueueAttributes with an unknown attribute name', async () => {
    await expectSqsError(sqs.send(new GetQueueAttributesCommand({
      QueueUrl: url, AttributeNames: ['NoSuchAttribute'],
    })), INVALID_ATTRIBUTE_NAME);
  });

  it('FifoQueue on a standard queue, even "false"', async () => {
    await expectSqsError(create('err-std-fifo-attr', { FifoQueue: 'false' }), INVALID_ATTRIBUTE_NAME);
  });

  it('SetQueueAttributes FifoQueue=false on a FIFO queue', async () => {
    await expectSqsError(sqs.send(new SetQueueAttributesCommand({
      QueueUrl: fifoUrl, Attributes: { FifoQueue: 'false' },
    })), INVALID_ATTRIBUTE_VALUE);
  });

  it('a .fifo name without FifoQueue=true', async () => {
    await expectSqsError(create('err-named.fifo'), INVALID_PARAMETER);
  });

  it('FifoQueue=true on a name without .fifo', async () => {
    await expectSqsError(create('err-unnamed', { FifoQueue: 'true' }), INVALID_PARAMETER);
  });

  it('a redrive policy with maxReceiveCount out of range', async () => {
    await create('err-dlq');
    await expectSqsError(create('err-redrive', {
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: queueArn('err-dlq'), maxReceiveCount: 0 }),
    }), INVALID_PARAMETER);
  });

  it('CreateQueue of a name deleted moments ago', async () => {
    const doomed = await create('err-recreate');
    await sqs.send(new DeleteQueueCommand({ QueueUrl: doomed }));
    await expectSqsError(create('err-recreate'), {
      name: 'QueueDeletedRecently', code: 'AWS.SimpleQueueService.QueueDeletedRecently', status: 400,
    });
  });

  it('ReceiveMessage with MaxNumberOfMessages 11', async () => {
    await expectSqsError(sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 11 })), INVALID_PARAMETER);
  });

  it('ReceiveMessage with MaxNumberOfMessages 0', async () => {
    await expectSqsError(sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 0 })), INVALID_PARAMETER);
  });

  it('ReceiveMessage with WaitTimeSeconds 21', async () => {
    await expectSqsError(sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 21 })), INVALID_PARAMETER);
  });

  it('SendMessage with an empty body', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: '' })), MISSING_PARAMETER);
  });

  it('SendMessage with characters outside the allowed set', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'nul \u0000 here' })), INVALID_CONTENTS);
    await expectSqsError(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'noncharacter \uffff' })), INVALID_CONTENTS);
  });

  it('SendMessage above MaximumMessageSize, counting attributes', async () => {
    const small = await create('err-small', { MaximumMessageSize: '1024' });
    await expectSqsError(sqs.send(new SendMessageCommand({ QueueUrl: small, MessageBody: 'x'.repeat(1025) })), INVALID_PARAMETER);
    // 1000 bytes of body fit alone, but not with 30 more bytes of attribute.
    await sqs.send(new SendMessageCommand({ QueueUrl: small, MessageBody: 'x'.repeat(1000) }));
    await expectSqsError(sqs.send(new SendMessageCommand({
      QueueUrl: small, MessageBody: 'x'.repeat(1000),
      MessageAttributes: { padding: { DataType: 'String', StringValue: 'y'.repeat(20) } },
    })), INVALID_PARAMETER);
  });

  it('SendMessage above the 1 MiB maximum', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'x'.repeat(1048577) })), INVALID_PARAMETER);
  });

  it('SendMessage with DelaySeconds above 900', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'x', DelaySeconds: 901 })), INVALID_PARAMETER);
  });

  it('a message attribute with an empty String value', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({
      QueueUrl: url, MessageBody: 'x', MessageAttributes: { empty: { DataType: 'String', StringValue: '' } },
    })), INVALID_PARAMETER);
  });

  it('SendMessageBatch with no entries', async () => {
    await expectSqsError(sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: [] })), batchError('EmptyBatchRequest'));
  });

  it('DeleteMessageBatch with no entries', async () => {
    await expectSqsError(sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: [] })), batchError('EmptyBatchRequest'));
  });

  it('SendMessageBatch with 11 entries', async () => {
    await expectSqsError(sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries(11) })),
      batchError('TooManyEntriesInBatchRequest'));
  });

  it('SendMessageBatch with duplicate entry ids', async () => {
    await expectSqsError(sqs.send(new SendMessageBatchCommand({
      QueueUrl: url, Entries: [{ Id: 'same', MessageBody: 'a' }, { Id: 'same', MessageBody: 'b' }],
    })), batchError('BatchEntryIdsNotDistinct'));
  });

  it('SendMessageBatch with an invalid entry id', async () => {
    await expectSqsError(sqs.send(new SendMessageBatchCommand({
      QueueUrl: url, Entries: [{ Id: 'not valid!', MessageBody: 'a' }],
    })), batchError('InvalidBatchEntryId'));
    await expectSqsError(sqs.send(new SendMessageBatchCommand({
      QueueUrl: url, Entries: [{ Id: 'x'.repeat(81), MessageBody: 'a' }],
    })), batchError('InvalidBatchEntryId'));
  });

  it('SendMessageBatch whose entries add up to more than 1 MiB', async () => {
    await expectSqsError(sqs.send(new SendMessageBatchCommand({
      QueueUrl: url, Entries: entries(2, (i) => ({ Id: `big${i}`, MessageBody: 'x'.repeat(600 * 1024) })),
    })), batchError('BatchRequestTooLong'));
  });

  it('DeleteMessage with a garbage receipt handle', async () => {
    await expectSqsError(sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: 'garbage' })), RECEIPT_HANDLE_INVALID);
  });

  it('ChangeMessageVisibility with a garbage receipt handle', async () => {
    await expectSqsError(sqs.send(new ChangeMessageVisibilityCommand({
      QueueUrl: url, ReceiptHandle: 'garbage', VisibilityTimeout: 10,
    })), RECEIPT_HANDLE_INVALID);
  });

  it('ChangeMessageVisibility of a deleted message', async () => {
    const queue = await create('err-cmv-deleted');
    await sqs.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: 'short-lived' }));
    const [message] = await receiveCount(sqs, queue, 1);
    await sqs.send(new DeleteMessageCommand({ QueueUrl: queue, ReceiptHandle: message.ReceiptHandle }));
    await expectSqsError(sqs.send(new ChangeMessageVisibilityCommand({
      QueueUrl: queue, ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: 10,
    })), INVALID_PARAMETER);
  });

  it('FIFO SendMessage without MessageGroupId', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({
      QueueUrl: fifoUrl, MessageBody: 'x', MessageDeduplicationId: 'd',
    })), MISSING_PARAMETER);
  });

  it('FIFO SendMessage with DelaySeconds', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({
      QueueUrl: fifoUrl, MessageBody: 'x', MessageGroupId: 'g', MessageDeduplicationId: 'd', DelaySeconds: 2,
    })), INVALID_PARAMETER);
  });

  it('FIFO SendMessage without a deduplication id and without content-based deduplication', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({
      QueueUrl: fifoUrl, MessageBody: 'x', MessageGroupId: 'g',
    })), INVALID_PARAMETER);
  });

  it('FIFO SendMessage with a malformed MessageGroupId', async () => {
    await expectSqsError(sqs.send(new SendMessageCommand({
      QueueUrl: fifoUrl, MessageBody: 'x', MessageGroupId: 'has space', MessageDeduplicationId: 'd',
    })), INVALID_PARAMETER);
    await expectSqsError(sqs.send(new SendMessageCommand({
      QueueUrl: fifoUrl, MessageBody: 'x', MessageGroupId: 'g'.repeat(129), MessageDeduplicationId: 'd',
    })), INVALID_PARAMETER);
  });

  it('FIFO SendMessageBatch with an entry missing its group', async () => {
    await expectSqsError(sqs.send(new SendMessageBatchCommand({
      QueueUrl: fifoUrl,
      Entries: [
        { Id: 'ok', MessageBody: 'a', MessageGroupId: 'g', MessageDeduplicationId: 'a' },
        { Id: 'nogroup', MessageBody: 'b', MessageDeduplicationId: 'b' },
      ],
    })), INVALID_PARAMETER);
  });
});
