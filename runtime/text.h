#pragma once
// Small text helpers shared by the executables (no LibTorch: the sweep uses
// them too).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clx {

// The first line where `a` and `b` differ, as (line of a, line of b); a text
// that ends first contributes "<missing>". std::nullopt when the texts have
// the same lines.
std::optional<std::pair<std::string, std::string>> first_differing_line(const std::string& a, const std::string& b);

// Whether `text` is valid UTF-8 (what JSON requires: no overlong forms, no
// surrogates, nothing above U+10FFFF). On failure `bad_offset`, if given,
// receives the offset of the first byte that is not.
bool is_valid_utf8(std::string_view text, size_t* bad_offset = nullptr);

// {3, 32, 32} -> "3x32x32": how messages write an image's or an array's shape.
std::string sizes_text(const std::vector<int64_t>& sizes);

// A double as exact text (hexadecimal floating point, "%a") and back: what
// checkpoints store where a resume must restore a value bit for bit.
std::string exact_double_text(double value);
double parse_exact_double(const std::string& text);

// "a,b,c" -> {"a", "b", "c"}, spaces around names removed, empty items dropped.
std::vector<std::string> parse_name_list(const std::string& text);

}  // namespace clx
