#include "protocol/sqs/auth.h"

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace spool::protocol::sqs {
namespace {

// The example credentials of AWS's SigV4 documentation and test suite.
constexpr std::string_view kAccessKey = "AKIDEXAMPLE";
constexpr std::string_view kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

constexpr std::string_view kAmzDate = "20261127T222452Z";
constexpr std::int64_t kSignedAtMs = 1795818292000;  // kAmzDate

constexpr std::string_view kSendMessageBody =
    "Action=SendMessage&Version=2012-11-05&QueueUrl=http%3A%2F%2F127.0.0.1%3A9324%2F000000000000%"
    "2Fq&MessageBody=hi";

SigV4Verifier Verifier() {
  return SigV4Verifier(
      std::map<std::string, std::string>{{std::string(kAccessKey), std::string(kSecret)}});
}

// A Query-protocol SendMessage as boto3 sends it, signed by `SignV4`.
struct Fixture {
  std::string method = "POST";
  std::string target = "/";
  std::string body = std::string(kSendMessageBody);
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
      {"Host", "127.0.0.1:9324"},
      {"X-Amz-Date", std::string(kAmzDate)},
  };

  SignedRequest Request() const { return {method, target, headers, body}; }

  void Sign(std::string_view secret = kSecret) {
    headers.emplace_back("Authorization",
                         SignV4(Request(), kAccessKey, secret, "us-east-1", kAmzDate));
  }

  void SetHeader(std::string_view name, const std::string& value) {
    for (auto& [key, old] : headers) {
      if (key == name) old = value;
    }
  }
};

std::string Code(const std::optional<SqsError>& error) {
  return error ? error->code : "ok";
}

TEST(SigV4Test, Sha256OfEmptyInputIsTheWellKnownDigest) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(SigV4Test, HmacMatchesRfc4231TestCase2) {
  const std::string mac = HmacSha256("Jefe", "what do ya want for nothing?");

  ASSERT_EQ(mac.size(), 32u);
  std::string hex;
  for (unsigned char c : mac) {
    static constexpr char kDigits[] = "0123456789abcdef";
    hex.push_back(kDigits[c >> 4]);
    hex.push_back(kDigits[c & 0xf]);
  }
  EXPECT_EQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(SigV4Test, SignsAwsTestSuiteGetVanilla) {
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
  const SignedRequest request{"GET", "/", headers, ""};

  const std::string authorization =
      SignV4ForService(request, kAccessKey, kSecret, "us-east-1", "service", "20150830T123600Z");

  EXPECT_EQ(authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

// The three requests below were signed by botocore 1.43.11 (SigV4Auth for "sqs" on an
// AWSRequest, clock fixed at kAmzDate).
TEST(SigV4Test, AcceptsQueryRequestSignedByBotocore) {
  Fixture f;
  f.headers.emplace_back("Content-Length", "110");
  f.headers.emplace_back(
      "Authorization",
      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs/aws4_request, "
      "SignedHeaders=content-type;host;x-amz-date, "
      "Signature=aa2418172b03e42372220ca337350378b049757d8ca40624dd99c61f4edf73f8");

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, AcceptsJsonRequestSignedByBotocore) {
  Fixture f;
  f.body = "{}";
  f.headers = {
      {"Host", "127.0.0.1:9324"},
      {"Content-Type", "application/x-amz-json-1.0"},
      {"X-Amz-Target", "AmazonSQS.ListQueues"},
      {"x-amzn-query-mode", "true"},
      {"X-Amz-Date", std::string(kAmzDate)},
      {"Authorization",
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs/aws4_request, "
       "SignedHeaders=content-type;host;x-amz-date;x-amz-target;x-amzn-query-mode, "
       "Signature=817e843da4e608dff6ad1df1b257673e66bac5fccfa79aff28b102ca3e1f8968"},
      {"Content-Length", "2"},
  };

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, AcceptsGetWithUnsortedQuerySignedByBotocore) {
  Fixture f;
  f.method = "GET";
  f.target = "/000000000000/q?Version=2012-11-05&Action=GetQueueAttributes&AttributeName.1=All";
  f.body = "";
  f.headers = {
      {"Host", "127.0.0.1:9324"},
      {"X-Amz-Date", std::string(kAmzDate)},
      {"Authorization",
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs/aws4_request, "
       "SignedHeaders=host;x-amz-date, "
       "Signature=cb1e3ecebc3752327b4af5de7747ebe37e5e4911b18fa837b36c7f38849b1e5c"},
  };

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, SignedRequestVerifies) {
  Fixture f;
  f.Sign();

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, SignV4MatchesBotocoreForTheSameRequest) {
  Fixture f;

  const std::string authorization = SignV4(f.Request(), kAccessKey, kSecret, "us-east-1", kAmzDate);

  EXPECT_EQ(authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=aa2418172b03e42372220ca337350378b049757d8ca40624dd99c61f4edf73f8");
}

TEST(SigV4Test, WrongSecretIsSignatureDoesNotMatch) {
  Fixture f;
  f.Sign("not-the-secret");

  const auto error = Verifier().Verify(f.Request(), kSignedAtMs);

  ASSERT_EQ(Code(error), "SignatureDoesNotMatch");
  EXPECT_NE(error->message.find("The request signature we calculated does not match"),
            std::string::npos);
}

TEST(SigV4Test, UnknownAccessKeyIsInvalidClientTokenId) {
  Fixture f;
  f.Sign();
  const SigV4Verifier verifier(
      std::map<std::string, std::string>{{"AKIDOTHER", std::string(kSecret)}});

  const auto error = verifier.Verify(f.Request(), kSignedAtMs);

  ASSERT_EQ(Code(error), "InvalidClientTokenId");
  EXPECT_EQ(error->message, "The security token included in the request is invalid.");
}

TEST(SigV4Test, MissingAuthorizationIsMissingAuthenticationToken) {
  Fixture f;

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "MissingAuthenticationToken");
}

TEST(SigV4Test, MalformedAuthorizationIsIncompleteSignature) {
  for (std::string header : {
           "garbage",
           "AWS4-HMAC-SHA256",
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs/aws4_request",
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs/aws4_request, "
           "SignedHeaders=host;x-amz-date",
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs, "
           "SignedHeaders=host;x-amz-date, Signature=00",
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs/aws4_request, "
           "SignedHeaders=x-amz-date, Signature=00",
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs/aws4_request, "
           "SignedHeaders=Host;X-Amz-Date, Signature=00",
           "AWS4-HMAC-SHA1 Credential=AKIDEXAMPLE/20261127/us-east-1/sqs/aws4_request, "
           "SignedHeaders=host;x-amz-date, Signature=00",
       }) {
    Fixture f;
    f.headers.emplace_back("Authorization", header);

    EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "IncompleteSignature") << header;
  }
}

TEST(SigV4Test, MissingOrMalformedAmzDateIsIncompleteSignature) {
  Fixture f;
  f.Sign();
  Fixture malformed = f;
  malformed.SetHeader("X-Amz-Date", "2026-11-27T22:24:52Z");
  Fixture missing = f;
  std::erase_if(missing.headers, [](const auto& h) { return h.first == "X-Amz-Date"; });

  EXPECT_EQ(Code(Verifier().Verify(malformed.Request(), kSignedAtMs)), "IncompleteSignature");
  EXPECT_EQ(Code(Verifier().Verify(missing.Request(), kSignedAtMs)), "IncompleteSignature");
}

TEST(SigV4Test, AlteredBodyIsSignatureDoesNotMatch) {
  Fixture f;
  f.Sign();
  f.body.back() = 'o';

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "SignatureDoesNotMatch");
}

TEST(SigV4Test, AlteredSignedHeaderIsSignatureDoesNotMatch) {
  Fixture f;
  f.Sign();
  f.SetHeader("Host", "127.0.0.1:9325");

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "SignatureDoesNotMatch");
}

TEST(SigV4Test, UnsignedHeadersMayChange) {
  Fixture f;
  f.Sign();
  f.headers.emplace_back("User-Agent", "added/1.0 after signing");

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "ok");
}

// The headers that choose the protocol and the action must be signed: otherwise a captured
// request could be replayed as another action.
TEST(SigV4Test, ActionAndContentTypeHeadersMustBeSigned) {
  Fixture f;
  f.Sign();
  f.headers.emplace_back("X-Amz-Target", "AmazonSQS.DeleteQueue");
  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "IncompleteSignature");

  Fixture unsigned_type;
  unsigned_type.headers.erase(unsigned_type.headers.begin());  // sign without Content-Type
  unsigned_type.Sign();
  unsigned_type.headers.emplace_back("Content-Type", "application/x-amz-json-1.0");
  EXPECT_EQ(Code(Verifier().Verify(unsigned_type.Request(), kSignedAtMs)), "IncompleteSignature");
}

TEST(SigV4Test, ContentSha256HeaderDoesNotReplaceTheBodyHash) {
  Fixture f;
  f.headers.emplace_back("x-amz-content-sha256", Sha256Hex(f.body));
  f.Sign();
  f.body = "Action=DeleteQueue";

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "SignatureDoesNotMatch");
}

TEST(SigV4Test, RequestsOlderOrNewerThanFifteenMinutesExpire) {
  Fixture f;
  f.Sign();
  constexpr std::int64_t kFifteenMinutesMs = std::int64_t{15} * 60 * 1000;

  const auto stale = Verifier().Verify(f.Request(), kSignedAtMs + kFifteenMinutesMs + 1000);
  const auto early = Verifier().Verify(f.Request(), kSignedAtMs - kFifteenMinutesMs - 1000);

  ASSERT_EQ(Code(stale), "RequestExpired");
  EXPECT_EQ(stale->message,
            "Signature expired: 20261127T222452Z is now earlier than 20261127T222453Z "
            "(20261127T223953Z - 15 min.)");
  EXPECT_EQ(Code(early), "RequestExpired");
  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs + kFifteenMinutesMs)), "ok");
  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs - kFifteenMinutesMs)), "ok");
}

TEST(SigV4Test, ScopeForAnotherServiceIsRejected) {
  Fixture f;
  f.headers.emplace_back("Authorization", SignV4ForService(f.Request(), kAccessKey, kSecret,
                                                           "us-east-1", "sns", kAmzDate));

  const auto error = Verifier().Verify(f.Request(), kSignedAtMs);

  ASSERT_EQ(Code(error), "SignatureDoesNotMatch");
  EXPECT_NE(error->message.find("'sqs'"), std::string::npos);
}

TEST(SigV4Test, ScopeDateMustMatchAmzDate) {
  Fixture f;
  f.Sign();
  std::string& authorization = f.headers.back().second;
  authorization.replace(authorization.find("20261127"), 8, "20261126");

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "SignatureDoesNotMatch");
}

TEST(SigV4Test, AnyRegionIsAccepted) {
  Fixture f;
  f.headers.emplace_back("Authorization",
                         SignV4(f.Request(), kAccessKey, kSecret, "eu-west-3", kAmzDate));

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, HeaderNamesMatchCaseInsensitively) {
  Fixture f;
  f.Sign();
  for (auto& [name, value] : f.headers) {
    if (name == "Authorization") name = "authorization";
    if (name == "Host") name = "HOST";
    if (name == "X-Amz-Date") name = "x-amz-date";
  }

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, HeaderValuesAreTrimmedAndInnerSpacesCollapsed) {
  Fixture f;
  f.Sign();
  f.SetHeader("Content-Type", "  application/x-www-form-urlencoded;    charset=utf-8 ");

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, QueryParametersAreSortedWhateverTheirOrder) {
  Fixture sorted;
  sorted.method = "GET";
  sorted.body = "";
  sorted.target = "/?Action=ListQueues&Version=2012-11-05";
  Fixture unsorted = sorted;
  unsorted.target = "/?Version=2012-11-05&Action=ListQueues";
  sorted.Sign();

  unsorted.headers.push_back(sorted.headers.back());

  EXPECT_EQ(Code(Verifier().Verify(unsorted.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, QueryIsReencodedBeforeSigning) {
  Fixture canonical;
  canonical.method = "GET";
  canonical.body = "";
  canonical.target = "/?Action=ListQueues&QueueNamePrefix=a%2Ab%20c&Version=2012-11-05&tilde=~";
  Fixture loose = canonical;
  loose.target = "/?tilde=%7e&QueueNamePrefix=a*b%20c&Version=2012-11-05&Action=ListQueues";
  canonical.Sign();

  loose.headers.push_back(canonical.headers.back());

  EXPECT_EQ(Code(Verifier().Verify(loose.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, QueryParametersAreSigned) {
  Fixture f;
  f.method = "GET";
  f.body = "";
  f.target = "/?Action=ListQueues&Version=2012-11-05";
  f.Sign();
  f.target = "/?Action=ListQueues&Version=2012-11-05&QueueNamePrefix=x";

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "SignatureDoesNotMatch");
}

TEST(SigV4Test, EmptyPathIsSignedAsSlash) {
  Fixture f;
  f.Sign();
  f.target = "";

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "ok");
}

TEST(SigV4Test, PathIsSigned) {
  Fixture f;
  f.Sign();
  f.target = "/000000000000/q";

  EXPECT_EQ(Code(Verifier().Verify(f.Request(), kSignedAtMs)), "SignatureDoesNotMatch");
}

}  // namespace
}  // namespace spool::protocol::sqs
