// The check of the C++ unit tests (csrc/tests): expect() counts every check and prints each
// failure; a test's main returns non-zero when bnn::test::failures is.
#pragma once

#include <cstdio>
#include <string>

namespace bnn::test {

inline int failures = 0, checks = 0;

inline void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

}  // namespace bnn::test
