#pragma once
// A mode option parsed once into its enum, so that the code after the
// parse compares values, not strings, and one message names the option.
#include <initializer_list>
#include <string>
#include <utility>

#include "runtime/error.h"

namespace clx {

// The value of `option` whose name is `text`; otherwise throws clx::Error
// "<option>: '<text>' is not one of a, b".
template <typename Enum>
Enum parse_choice(const std::string& option, const std::string& text,
                  std::initializer_list<std::pair<const char*, Enum>> choices) {
  std::string names;
  for (const auto& [name, value] : choices) {
    if (text == name) return value;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  throw Error(option + ": '" + text + "' is not one of " + names);
}

}  // namespace clx
