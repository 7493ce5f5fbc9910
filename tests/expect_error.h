#pragma once
// expect_error<E>(body, phrases): runs `body`, expects an exception of type E
// (clx::Error by default) and checks that its message contains every phrase.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/error.h"

namespace clx::testing_support {

template <typename ExpectedError = clx::Error, typename Body>
void expect_error(Body&& body, const std::vector<std::string>& phrases) {
  try {
    body();
    ADD_FAILURE() << "expected an exception, nothing was thrown";
  } catch (const ExpectedError& error) {
    const std::string message = error.what();
    for (const std::string& phrase : phrases)
      EXPECT_NE(message.find(phrase), std::string::npos) << "message: '" << message << "'\nlacks: '" << phrase << "'";
  } catch (const std::exception& error) {
    ADD_FAILURE() << "expected another exception type, got: " << error.what();
  }
}

}  // namespace clx::testing_support
