// GSM8K verifier: each rule of open-instruct's GSM8KVerifier has a hand-checked case.
#include <gtest/gtest.h>

#include "posttrain/reward/gsm8k.hpp"

namespace pt = posttrain;
using pt::reward::gsm8k_extract;
using pt::reward::gsm8k_remove_digit_commas;

TEST(Gsm8k, DigitCommasOnePass) {
  EXPECT_EQ(gsm8k_remove_digit_commas("1,234,567"), "1234567");
  // re.sub consumes the 2 of "1,2", so ",3" is not a match in the same pass.
  EXPECT_EQ(gsm8k_remove_digit_commas("1,2,3"), "12,3");
  EXPECT_EQ(gsm8k_remove_digit_commas("a, b,1 ,2"), "a, b,1 ,2");
  EXPECT_EQ(gsm8k_remove_digit_commas(""), "");
}

TEST(Gsm8k, LastNumber) {
  EXPECT_EQ(gsm8k_extract("It costs $1,200 and then 18 more."), "18");
  EXPECT_EQ(gsm8k_extract("total is 1,234,567"), "1234567");
  EXPECT_EQ(gsm8k_extract("1,2,3"), "3");  // "12,3": the last number is 3
  EXPECT_EQ(gsm8k_extract("x = -3.5"), "-3.5");
  EXPECT_EQ(gsm8k_extract("answer +5"), "+5");
  EXPECT_EQ(gsm8k_extract("answer .75"), ".75");
  EXPECT_EQ(gsm8k_extract("answer 18."), "18");       // \d*\.\d+ needs a digit after '.'
  EXPECT_EQ(gsm8k_extract("1.2.3"), ".3");           // "1.2" then ".3"
  EXPECT_EQ(gsm8k_extract("a - 7"), "7");            // the sign must touch the digits
  EXPECT_EQ(gsm8k_extract("10-4"), "-4");
  EXPECT_EQ(gsm8k_extract("no digits here"), "no digits here");  // whole response
  EXPECT_EQ(gsm8k_extract("1,000 apples,"), "1000");
  EXPECT_EQ(gsm8k_extract(""), "");
}

TEST(Gsm8k, ExactCaseInsensitiveEquality) {
  const pt::reward::gsm8k_verifier v;
  EXPECT_EQ(v.score("The answer is 18", "18"), 1.0);
  EXPECT_EQ(v.score("The answer is 18.0", "18"), 0.0);  // exact string: "18.0" != "18"
  EXPECT_EQ(v.score("The answer is +5", "5"), 0.0);     // "+5" != "5"
  EXPECT_EQ(v.score("#### 1,234", "1234"), 1.0);        // thousands separator removed
  EXPECT_EQ(v.score("The answer is 1,234", "1,234"), 0.0);  // the label is not normalised
  EXPECT_EQ(v.score("YES", "yes"), 1.0);                // no number: whole text, lower-cased
  EXPECT_EQ(v.score("Answer: YES", "yes"), 0.0);        // the whole text, not its last word
  EXPECT_EQ(v.score("Answer: YES", "Answer: yes"), 1.0);
  EXPECT_EQ(v.score("", ""), 1.0);
  EXPECT_EQ(v.score("", "0"), 0.0);
  EXPECT_EQ(v.score("7", ""), 0.0);
  EXPECT_EQ(pt::reward::gsm8k_verifier::name(), "gsm8k");
}
