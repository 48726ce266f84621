#include "common/error.h"

#include <gtest/gtest.h>

namespace spool {
namespace {

Result<int> Half(int v) {
  if (v % 2 != 0) return InvalidArgument(std::to_string(v) + " is odd");
  return v / 2;
}

TEST(ResultTest, HoldsAValueOrAnError) {
  auto ok = Half(4);
  auto bad = Half(3);

  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 2);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message, "3 is odd");
  EXPECT_EQ(bad.error().ToString(), "INVALID_ARGUMENT: 3 is odd");
}

TEST(ResultTest, StatusIsOkByDefaultAndCarriesAnError) {
  Status ok = Ok();
  Status bad = NotFound("x");

  EXPECT_TRUE(ok.has_value());
  EXPECT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, ErrorCode::kNotFound);
}

TEST(ResultTest, MovesOutTheValue) {
  Result<std::string> r(std::string(100, 'x'));
  std::string taken = std::move(r).value();
  EXPECT_EQ(taken.size(), 100u);
}

}  // namespace
}  // namespace spool
