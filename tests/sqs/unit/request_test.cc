// The SQS request parsers: Query forms folded into the JSON protocol's shape, JSON bodies,
// and every malformed input answered with an SQS error rather than a crash.
#include "protocol/sqs/request.h"

#include <gtest/gtest.h>

namespace spool::protocol::sqs {
namespace {

using nlohmann::json;

SqsRequest Query(std::string_view form) {
  SqsRequest out;
  auto error = ParseQuery(form, out);
  EXPECT_FALSE(error) << error->code << ": " << error->message;
  return out;
}

std::string QueryError(std::string_view form) {
  SqsRequest out;
  auto error = ParseQuery(form, out);
  return error ? error->code : "";
}

TEST(SqsRequestTest, QueryScalarsAreDecoded) {
  auto r = Query(
      "Action=SendMessage&Version=2012-11-05&QueueUrl=http%3A%2F%2F127.0.0.1%3A9324%2F0%2Fq"
      "&MessageBody=hello+world%21&DelaySeconds=5");
  EXPECT_EQ(r.protocol, WireProtocol::kQuery);
  EXPECT_EQ(r.action, "SendMessage");
  EXPECT_EQ(r.params["QueueUrl"], "http://127.0.0.1:9324/0/q");
  EXPECT_EQ(r.params["MessageBody"], "hello world!");
  EXPECT_EQ(r.params["DelaySeconds"], "5");
  EXPECT_FALSE(r.params.contains("Version")) << "protocol parameters are not input";
}

TEST(SqsRequestTest, QueryMapsAndListsFoldInIndexOrder) {
  auto r = Query(
      "Action=CreateQueue&QueueName=q&Attribute.2.Name=DelaySeconds&Attribute.2.Value=3"
      "&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=40&Tag.1.Key=team&Tag.1.Value=a");
  EXPECT_EQ(r.params["Attributes"], (json{{"VisibilityTimeout", "40"}, {"DelaySeconds", "3"}}));
  EXPECT_EQ(r.params["tags"], (json{{"team", "a"}})) << "CreateQueue's tag map is lower-case";

  auto tag = Query("Action=TagQueue&QueueUrl=q&Tag.1.Key=k&Tag.1.Value=");
  EXPECT_EQ(tag.params["Tags"], (json{{"k", ""}})) << "a tag value may be empty";

  auto get = Query(
      "Action=GetQueueAttributes&QueueUrl=q&AttributeName.2=QueueArn"
      "&AttributeName.1=All");
  EXPECT_EQ(get.params["AttributeNames"], (json{"All", "QueueArn"}));
}

TEST(SqsRequestTest, QueryBatchEntriesNestTheirAttributes) {
  auto r = Query(
      "Action=SendMessageBatch&QueueUrl=q"
      "&SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=two"
      "&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=one"
      "&SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=n"
      "&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=Number.int"
      "&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=42");
  ASSERT_EQ(r.params["Entries"].size(), 2u);
  EXPECT_EQ(r.params["Entries"][0]["Id"], "a");
  EXPECT_EQ(r.params["Entries"][1]["MessageBody"], "two");
  EXPECT_EQ(r.params["Entries"][0]["MessageAttributes"]["n"],
            (json{{"DataType", "Number.int"}, {"StringValue", "42"}}));
}

TEST(SqsRequestTest, QueryEmptyListIsPresentButEmpty) {
  auto r = Query("Action=SendMessageBatch&QueueUrl=q&Entries=");
  ASSERT_TRUE(r.params.contains("Entries"));
  EXPECT_TRUE(r.params["Entries"].empty());
}

TEST(SqsRequestTest, QueryErrorsHaveSqsCodes) {
  EXPECT_EQ(QueryError(""), "MissingAction");
  EXPECT_EQ(QueryError("QueueName=q"), "MissingAction");
  EXPECT_EQ(QueryError("Action=DropEverything"), "InvalidAction");
  EXPECT_EQ(QueryError("Action=ListQueues&QueueNamePrefix=%zz"), "MalformedQueryString");
  EXPECT_EQ(QueryError("Action=ListQueues&QueueNamePrefix=%4"), "MalformedQueryString");
  EXPECT_EQ(QueryError("Action=ListQueues&QueueNamePrefix=a&QueueNamePrefix=b"),
            "MalformedQueryString");
  EXPECT_EQ(QueryError("Action=CreateQueue&QueueName=q&Attribute.x.Name=a"),
            "InvalidParameterValue");
  EXPECT_EQ(QueryError("Action=CreateQueue&QueueName=q&Attribute.0.Name=a&Attribute.0.Value=1"),
            "InvalidParameterValue");
  EXPECT_EQ(QueryError("Action=CreateQueue&QueueName=q&Attribute.1.Value=1"), "MissingParameter");
  EXPECT_EQ(QueryError("Action=CreateQueue&QueueName=q&Unknown.1=1"), "InvalidParameterValue");
  EXPECT_EQ(QueryError("Action=SendMessage&QueueUrl=q&MessageBody=x&MessageAttribute.1.Name=a"
                       "&MessageAttribute.1.Bogus=1"),
            "InvalidParameterValue");
}

TEST(SqsRequestTest, JsonBodiesAreTakenAsTheyAre) {
  SqsRequest r;
  ASSERT_FALSE(
      ParseJson("AmazonSQS.ReceiveMessage", R"({"QueueUrl":"q","MaxNumberOfMessages":10})", r));
  EXPECT_EQ(r.protocol, WireProtocol::kJson);
  EXPECT_EQ(r.action, "ReceiveMessage");
  EXPECT_EQ(r.params["MaxNumberOfMessages"], 10);

  ASSERT_FALSE(ParseJson("AmazonSQS.ListQueues", "", r)) << "an empty body is {}";
  EXPECT_TRUE(r.params.empty());
}

TEST(SqsRequestTest, JsonErrors) {
  SqsRequest r;
  EXPECT_EQ(ParseJson("AmazonSQS.Nope", "{}", r)->code, "InvalidAction");
  EXPECT_EQ(ParseJson("DynamoDB_20120810.GetItem", "{}", r)->code, "InvalidAction");
  EXPECT_EQ(ParseJson("AmazonSQS.ListQueues", "{", r)->code, "InvalidParameterValue");
  EXPECT_EQ(ParseJson("AmazonSQS.ListQueues", "[1]", r)->code, "InvalidParameterValue");
  std::string deep(10'000, '[');
  EXPECT_EQ(ParseJson("AmazonSQS.ListQueues", "{\"a\":" + deep, r)->code, "InvalidParameterValue");
}

TEST(SqsRequestTest, FormDecode) {
  EXPECT_EQ(FormDecode("a+b%20c%2B"), "a b c+");
  EXPECT_EQ(FormDecode("%"), std::nullopt);
  EXPECT_EQ(FormDecode("%a"), std::nullopt);
  EXPECT_EQ(FormDecode("%g0"), std::nullopt);
  EXPECT_EQ(FormDecode(""), "");
}

}  // namespace
}  // namespace spool::protocol::sqs
