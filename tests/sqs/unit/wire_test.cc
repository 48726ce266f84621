// What the SQS API writes: digests SDKs verify, both protocols' documents, error shapes.
#include "protocol/sqs/wire.h"

#include <gtest/gtest.h>

namespace spool::protocol::sqs {
namespace {

using nlohmann::json;

std::string Header(const WireReply& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

TEST(SqsWireTest, BodyDigests) {
  EXPECT_EQ(Md5Hex("hello"), "5d41402abc4b2a76b9719d911017c592");
  EXPECT_EQ(Md5Hex("message-1"), "3d6b824fd8c1520e9a047d21fee6fb1f");  // recorded from AWS
}

// Published vectors (npm aws-md5-of-message-attributes) and one recorded from AWS.
TEST(SqsWireTest, AttributeDigestsMatchPublishedVectors) {
  const MessageAttribute s{"attribName1", "String", "attribValue 1"};
  const MessageAttribute n{"customNumberTypeAttrib", "Number.float",
                           "4563442423554324324264524243.32543234"};
  const MessageAttribute b{"binaryAttribute", "Binary", "Hello binary world!"};
  EXPECT_EQ(Md5OfAttributes({s}), "19e27d4e946b072f3f58da80d94fd778");
  EXPECT_EQ(Md5OfAttributes({n}), "9fe1b90bbd9965bdf77bac517c7d2495");
  EXPECT_EQ(Md5OfAttributes({b}), "31a92b15d92f8db860eda32aceb656c3");
  EXPECT_EQ(Md5OfAttributes({b, s, n}), "c932db14a896c663f83c260297d594ff") << "order-free";
  EXPECT_EQ(Md5OfAttributes({{"MyAttribute", "String", "foobar"}}),
            "adb59cd4678ea5a855436b949cd07ab6");
  EXPECT_EQ(Md5OfAttributes({}), std::nullopt);
}

TEST(SqsWireTest, Base64RoundTripsAndRejectsGarbage) {
  for (std::string bytes : {std::string(""), std::string("\x00\x01", 2), std::string("abc"),
                            std::string("abcd"), std::string(1000, '\xff')}) {
    EXPECT_EQ(Base64Decode(Base64Encode(bytes)), bytes);
  }
  EXPECT_EQ(Base64Encode(std::string("\x00\x01", 2)), "AAE=");
  EXPECT_EQ(Base64Decode("AAE"), std::nullopt);
  EXPECT_EQ(Base64Decode("A=AE"), std::nullopt);
  EXPECT_EQ(Base64Decode("AA!="), std::nullopt);
}

TEST(SqsWireTest, MessageTextFollowsTheXmlCharacterRange) {
  EXPECT_TRUE(IsValidMessageText("plain \t\r\n text"));
  EXPECT_TRUE(IsValidMessageText("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));  // é € 😀
  EXPECT_FALSE(IsValidMessageText(std::string("\x00", 1)));
  EXPECT_FALSE(IsValidMessageText("\x01"));
  EXPECT_FALSE(IsValidMessageText("\xff"));
  EXPECT_FALSE(IsValidMessageText("\xc0\xaf")) << "overlong";
  EXPECT_FALSE(IsValidMessageText("\xef\xbf\xbe")) << "U+FFFE";
  EXPECT_FALSE(IsValidMessageText("\xed\xa0\x80")) << "a surrogate";
  EXPECT_FALSE(IsValidMessageText("\xe2\x82")) << "cut short";
}

TEST(SqsWireTest, QueryXmlFlattensListsAndMaps) {
  json result = {
      {"Messages",
       {{{"MessageId", "m"},
         {"Body", "a<b&c"},
         {"Attributes", {{"SentTimestamp", "1"}}},
         {"MessageAttributes", {{"b", {{"DataType", "Binary"}, {"BinaryValue", "AAE="}}}}}}}}};
  const std::string xml = ToQueryXml("ReceiveMessage", result, "rid");
  EXPECT_NE(xml.find("<ReceiveMessageResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">"
                     "<ReceiveMessageResult><Message>"),
            std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<Body>a&lt;b&amp;c</Body>"), std::string::npos);
  EXPECT_NE(xml.find("<Attribute><Name>SentTimestamp</Name><Value>1</Value></Attribute>"),
            std::string::npos);
  EXPECT_NE(xml.find("<MessageAttribute><Name>b</Name><Value><BinaryValue>AAE=</BinaryValue>"
                     "<DataType>Binary</DataType></Value></MessageAttribute>"),
            std::string::npos);
  EXPECT_NE(xml.find("<ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata>"),
            std::string::npos);

  const std::string batch = ToQueryXml(
      "DeleteMessageBatch",
      {{"Successful", {{{"Id", "a"}}}},
       {"Failed", {{{"Id", "b"}, {"SenderFault", true}, {"Code", "X"}, {"Message", "m"}}}}},
      "r");
  EXPECT_NE(batch.find("<DeleteMessageBatchResultEntry><Id>a</Id></DeleteMessageBatchResultEntry>"),
            std::string::npos);
  EXPECT_NE(batch.find("<BatchResultErrorEntry><Code>X</Code><Id>b</Id><Message>m</Message>"
                       "<SenderFault>true</SenderFault></BatchResultErrorEntry>"),
            std::string::npos);
  EXPECT_EQ(ToQueryXml("DeleteQueue", json::object(), "r").find("DeleteQueueResult"),
            std::string::npos)
      << "actions without output have no Result element";
}

TEST(SqsWireTest, JsonErrorsCarryTheLegacyCode) {
  auto r = ErrorReply(
      WireProtocol::kJson,
      {"AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist."}, "rid");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Header(r, "x-amzn-query-error"), "AWS.SimpleQueueService.NonExistentQueue;Sender");
  auto body = json::parse(r.body);
  EXPECT_EQ(body["__type"], "com.amazonaws.sqs#QueueDoesNotExist");
  EXPECT_EQ(body["message"], "The specified queue does not exist.");

  EXPECT_EQ(
      ErrorReply(WireProtocol::kJson, {"InvalidParameterValue", "x"}, "r").body,
      R"({"__type":"com.amazon.coral.service#InvalidParameterValueException","message":"x"})");
  EXPECT_EQ(ErrorStatus("AWS.SimpleQueueService.PurgeQueueInProgress"), 403);
  EXPECT_EQ(ErrorStatus("ResourceNotFoundException"), 404);
  EXPECT_EQ(ErrorStatus("SignatureDoesNotMatch"), 403);
  EXPECT_EQ(ErrorStatus("InternalFailure"), 500);
  EXPECT_EQ(
      Header(ErrorReply(WireProtocol::kJson, {"InternalFailure", "x"}, "r"), "x-amzn-query-error"),
      "InternalFailure;Receiver");
}

TEST(SqsWireTest, QueryErrorDocument) {
  auto r = ErrorReply(WireProtocol::kQuery, {"QueueAlreadyExists", "a \"b\""}, "rid");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Header(r, "Content-Type"), "text/xml");
  EXPECT_NE(r.body.find("<Error><Type>Sender</Type><Code>QueueAlreadyExists</Code>"
                        "<Message>a &quot;b&quot;</Message><Detail/></Error><RequestId>rid"
                        "</RequestId></ErrorResponse>"),
            std::string::npos)
      << r.body;
}

TEST(SqsWireTest, XmlCarriesOnlyWhatXmlCan) {
  EXPECT_EQ(XmlEscape("a<b>&\"c\"\r"), "a&lt;b&gt;&amp;&quot;c&quot;&#xD;");
  EXPECT_EQ(XmlEscape("caf\xc3\xa9"), "caf\xc3\xa9");
  // Control characters and broken UTF-8 (a body sent over gRPC) become U+FFFD.
  EXPECT_EQ(XmlEscape(std::string("a\x01"
                                  "b\xff"
                                  "c\xe2\x82",
                                  7)),
            "a\xef\xbf\xbd"
            "b\xef\xbf\xbd"
            "c\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(SqsWireTest, JsonRepliesSurviveBytesThatAreNotUtf8) {
  auto r = SuccessReply(WireProtocol::kJson, "ReceiveMessage",
                        {{"Messages", {{{"Body", std::string("\xff\xfe", 2)}}}}}, "rid");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(json::accept(r.body));
}

}  // namespace
}  // namespace spool::protocol::sqs
