#!/usr/bin/env bash
# Debian's AWS CLI (v2.9, the Query protocol) against a real spoold on 127.0.0.1 port 0:
# the commands a user types first, with outputs checked against what AWS answers.
#
# usage: smoke.sh PATH/TO/spoold
set -euo pipefail

SPOOLD=${1:?usage: smoke.sh PATH/TO/spoold}
AWS=/usr/bin/aws
PY=/usr/bin/python3
[[ -x $AWS ]] || { echo "FAIL: $AWS is missing (apt-get install awscli)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/spool-sqs-awscli.XXXXXX)
SPOOLD_PID=
cleanup() {
  local rc=$?
  if [[ -n $SPOOLD_PID ]] && kill -0 "$SPOOLD_PID" 2>/dev/null; then
    kill -TERM "$SPOOLD_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SPOOLD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SPOOLD_PID" 2>/dev/null || true
    wait "$SPOOLD_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f $WORK/spoold.log ]]; then
    echo "--- spoold log (last 40 lines) ---" >&2
    tail -n 40 "$WORK/spoold.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

"$SPOOLD" --data-dir "$WORK/data" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$WORK/spoold.log" 2>&1 &
SPOOLD_PID=$!

HTTP=
for _ in $(seq 1 300); do
  HTTP=$(sed -n 's/.*spoold ready:.* http=\([^ ]*\).*/\1/p' "$WORK/spoold.log" | head -n 1)
  [[ -n $HTTP ]] && break
  kill -0 "$SPOOLD_PID" 2>/dev/null || { echo "FAIL: spoold exited early" >&2; exit 1; }
  sleep 0.1
done
[[ -n $HTTP ]] || { echo "FAIL: spoold did not print its ready line" >&2; exit 1; }
ENDPOINT="http://$HTTP"

# Dummy credentials and no user configuration: the result must not depend on ~/.aws.
export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
export AWS_CONFIG_FILE=$WORK/no-config AWS_SHARED_CREDENTIALS_FILE=$WORK/no-credentials
export AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1 AWS_RETRY_MODE=standard
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_CA_BUNDLE || true

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; }

# Runs the CLI; stdout is the answer, stderr (warnings included) is kept for error checks.
sqs_raw() { "$AWS" --endpoint-url "$ENDPOINT" --cli-read-timeout 40 sqs "$@" 2>"$WORK/stderr"; }

# The same, for commands that must succeed: a failure shows what the CLI said.
sqs() {
  local rc=0
  sqs_raw "$@" || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "FAIL: aws sqs $1 exited with $rc:" >&2
    cat "$WORK/stderr" >&2
  fi
  return "$rc"
}

# Reads JSON on stdin and prints the value of a Python expression over it (as `d`). The CLI
# prints nothing at all for an empty answer (a receive that got no message), hence `{}`.
json() {
  "$PY" -c 'import json, sys
text = sys.stdin.read().strip()
d = json.loads(text) if text else {}
v = eval(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v, sort_keys=True))' "$1"
}

expect_eq() { # description expected actual
  if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

# Expects the command to fail with this error code in its message.
expect_error() { # description code command...
  local description=$1 code=$2
  shift 2
  if sqs_raw "$@" >"$WORK/stdout"; then
    fail "$description: succeeded, expected $code"
  elif grep -q "($code)" "$WORK/stderr"; then
    pass "$description"
  else
    fail "$description: expected ($code) in: $(tr '\n' ' ' <"$WORK/stderr")"
  fi
}

md5() { printf '%s' "$1" | md5sum | cut -d' ' -f1; }

# --- queues ------------------------------------------------------------------------------
Q=cli-smoke
URL=$(sqs create-queue --queue-name "$Q" --attributes VisibilityTimeout=20 --query QueueUrl --output text)
expect_eq "create-queue returns the queue URL" "$ENDPOINT/000000000000/$Q" "$URL"
AGAIN=$(sqs create-queue --queue-name "$Q" --attributes VisibilityTimeout=20 --query QueueUrl --output text)
expect_eq "create-queue again with the same attributes" "$URL" "$AGAIN"
expect_eq "get-queue-url" "$URL" "$(sqs get-queue-url --queue-name "$Q" --query QueueUrl --output text)"

sqs create-queue --queue-name cli-other >/dev/null
LISTED=$(sqs list-queues --queue-name-prefix cli-smo --output json | json 'd.get("QueueUrls", [])')
expect_eq "list-queues with a prefix" "[\"$URL\"]" "$LISTED"
ALL=$(sqs list-queues --output json | json 'sorted(d.get("QueueUrls", []))')
expect_eq "list-queues" "[\"$ENDPOINT/000000000000/cli-other\", \"$URL\"]" "$ALL"

ATTRS=$(sqs get-queue-attributes --queue-url "$URL" --attribute-names All --output json)
expect_eq "VisibilityTimeout as created" 20 "$(json 'd["Attributes"]["VisibilityTimeout"]' <<<"$ATTRS")"
expect_eq "default MaximumMessageSize" 1048576 "$(json 'd["Attributes"]["MaximumMessageSize"]' <<<"$ATTRS")"
expect_eq "default MessageRetentionPeriod" 345600 \
  "$(json 'd["Attributes"]["MessageRetentionPeriod"]' <<<"$ATTRS")"
expect_eq "QueueArn" "arn:aws:sqs:us-east-1:000000000000:$Q" "$(json 'd["Attributes"]["QueueArn"]' <<<"$ATTRS")"

sqs set-queue-attributes --queue-url "$URL" --attributes DelaySeconds=0,VisibilityTimeout=25
expect_eq "set-queue-attributes" 25 \
  "$(sqs get-queue-attributes --queue-url "$URL" --attribute-names VisibilityTimeout \
       --query Attributes.VisibilityTimeout --output text)"

sqs tag-queue --queue-url "$URL" --tags team=spool,env=ci
expect_eq "tag-queue / list-queue-tags" '{"env": "ci", "team": "spool"}' \
  "$(sqs list-queue-tags --queue-url "$URL" --output json | json 'd.get("Tags", {})')"

# --- standard messages -------------------------------------------------------------------
BODY='hello from the aws cli <&> ✓'
ATTR_JSON='{"origin":{"DataType":"String","StringValue":"smoke"},"n":{"DataType":"Number.int","StringValue":"7"}}'
# The attribute digest is computed here, from the algorithm in the SQS reference, not read back.
ATTR_MD5=$("$PY" - <<'EOF'
import hashlib, struct
attrs = {"origin": ("String", "smoke"), "n": ("Number.int", "7")}
field = lambda raw: struct.pack(">I", len(raw)) + raw
out = b""
for name in sorted(attrs, key=lambda n: n.encode()):
    data_type, value = attrs[name]
    out += field(name.encode()) + field(data_type.encode()) + b"\x01" + field(value.encode())
print(hashlib.md5(out).hexdigest())
EOF
)
SENT=$(sqs send-message --queue-url "$URL" --message-body "$BODY" --message-attributes "$ATTR_JSON" \
  --output json)
MESSAGE_ID=$(json 'd["MessageId"]' <<<"$SENT")
expect_eq "send-message MD5OfMessageBody" "$(md5 "$BODY")" "$(json 'd["MD5OfMessageBody"]' <<<"$SENT")"
expect_eq "send-message MD5OfMessageAttributes" "$ATTR_MD5" \
  "$(json 'd["MD5OfMessageAttributes"]' <<<"$SENT")"

RECEIVED=$(sqs receive-message --queue-url "$URL" --wait-time-seconds 5 --attribute-names All \
  --message-attribute-names All --output json)
expect_eq "receive-message gets one message" 1 "$(json 'len(d.get("Messages", []))' <<<"$RECEIVED")"
expect_eq "received MessageId" "$MESSAGE_ID" "$(json 'd["Messages"][0]["MessageId"]' <<<"$RECEIVED")"
expect_eq "received body" "$BODY" "$(json 'd["Messages"][0]["Body"]' <<<"$RECEIVED")"
expect_eq "received MD5OfBody" "$(md5 "$BODY")" "$(json 'd["Messages"][0]["MD5OfBody"]' <<<"$RECEIVED")"
expect_eq "received attribute of custom type" '{"DataType": "Number.int", "StringValue": "7"}' \
  "$(json 'd["Messages"][0]["MessageAttributes"]["n"]' <<<"$RECEIVED")"
expect_eq "received MD5OfMessageAttributes" "$ATTR_MD5" \
  "$(json 'd["Messages"][0]["MD5OfMessageAttributes"]' <<<"$RECEIVED")"
expect_eq "ApproximateReceiveCount" 1 \
  "$(json 'd["Messages"][0]["Attributes"]["ApproximateReceiveCount"]' <<<"$RECEIVED")"
HANDLE=$(json 'd["Messages"][0]["ReceiptHandle"]' <<<"$RECEIVED")

expect_eq "in flight: nothing more to receive" 0 \
  "$(sqs receive-message --queue-url "$URL" --output json | json 'len(d.get("Messages", []))')"
sqs delete-message --queue-url "$URL" --receipt-handle "$HANDLE"
pass "delete-message"
COUNTS=$(sqs get-queue-attributes --queue-url "$URL" \
  --attribute-names ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible --output json)
expect_eq "queue empty after delete" '["0", "0"]' \
  "$(json '[d["Attributes"]["ApproximateNumberOfMessages"], d["Attributes"]["ApproximateNumberOfMessagesNotVisible"]]' <<<"$COUNTS")"

BATCH=$(sqs send-message-batch --queue-url "$URL" --output json --entries \
  '[{"Id":"good","MessageBody":"batch one"},{"Id":"bad","MessageBody":"bell \u0007"}]')
expect_eq "send-message-batch: the good entry succeeds" '["good"]' \
  "$(json '[e["Id"] for e in d.get("Successful", [])]' <<<"$BATCH")"
expect_eq "send-message-batch: the bad entry fails alone" '[["bad", "InvalidMessageContents"]]' \
  "$(json '[[e["Id"], e["Code"]] for e in d.get("Failed", [])]' <<<"$BATCH")"

sqs purge-queue --queue-url "$URL"
pass "purge-queue"

# --- FIFO --------------------------------------------------------------------------------
FQ=cli-smoke.fifo
FURL=$(sqs create-queue --queue-name "$FQ" --attributes FifoQueue=true,ContentBasedDeduplication=true \
  --query QueueUrl --output text)
expect_eq "create a FIFO queue" "$ENDPOINT/000000000000/$FQ" "$FURL"
F1=$(sqs send-message --queue-url "$FURL" --message-body "fifo one" --message-group-id g --output json)
F2=$(sqs send-message --queue-url "$FURL" --message-body "fifo two" --message-group-id g --output json)
DUP=$(sqs send-message --queue-url "$FURL" --message-body "fifo one" --message-group-id g --output json)
expect_eq "content-based duplicate gets the first MessageId" "$(json 'd["MessageId"]' <<<"$F1")" \
  "$(json 'd["MessageId"]' <<<"$DUP")"
SEQ_OK=$("$PY" -c 'import json, sys; a, b = (int(json.loads(x)["SequenceNumber"]) for x in sys.argv[1:]); print(a < b)' "$F1" "$F2")
expect_eq "FIFO sequence numbers increase" True "$SEQ_OK"
FRECV=$(sqs receive-message --queue-url "$FURL" --max-number-of-messages 10 --wait-time-seconds 5 \
  --attribute-names All --output json)
expect_eq "FIFO receive in order" '["fifo one", "fifo two"]' \
  "$(json '[m["Body"] for m in d.get("Messages", [])]' <<<"$FRECV")"
expect_eq "FIFO MessageGroupId attribute" g \
  "$(json 'd["Messages"][0]["Attributes"]["MessageGroupId"]' <<<"$FRECV")"

# --- errors ------------------------------------------------------------------------------
expect_error "get-queue-url of a missing queue" AWS.SimpleQueueService.NonExistentQueue \
  get-queue-url --queue-name no-such-queue
expect_error "MaxNumberOfMessages 11" InvalidParameterValue \
  receive-message --queue-url "$URL" --max-number-of-messages 11
expect_error "FIFO send without a group id" MissingParameter \
  send-message --queue-url "$FURL" --message-body x
expect_error "delete-message with a garbage handle" ReceiptHandleIsInvalid \
  delete-message --queue-url "$URL" --receipt-handle garbage
expect_error "second purge within 60 s" AWS.SimpleQueueService.PurgeQueueInProgress \
  purge-queue --queue-url "$URL"

# --- delete ------------------------------------------------------------------------------
sqs delete-queue --queue-url "$URL"
sqs delete-queue --queue-url "$FURL"
REMAINING=$(sqs list-queues --output json | json 'sorted(d.get("QueueUrls", []))')
expect_eq "delete-queue" "[\"$ENDPOINT/000000000000/cli-other\"]" "$REMAINING"
expect_error "create-queue right after delete-queue" AWS.SimpleQueueService.QueueDeletedRecently \
  create-queue --queue-name "$Q"

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
