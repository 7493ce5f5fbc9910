#include "runtime/text.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace clx {

std::optional<std::pair<std::string, std::string>> first_differing_line(const std::string& a, const std::string& b) {
  std::istringstream left_lines(a), right_lines(b);
  std::string left, right;
  while (true) {
    const bool more_left = static_cast<bool>(std::getline(left_lines, left));
    const bool more_right = static_cast<bool>(std::getline(right_lines, right));
    if (!more_left && !more_right) return std::nullopt;
    if (!more_left) left = "<missing>";
    if (!more_right) right = "<missing>";
    if (left != right) return std::make_pair(left, right);
  }
}

bool is_valid_utf8(std::string_view text, size_t* bad_offset) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = bytes[i];
    size_t length = 0;
    uint32_t code = 0, minimum = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, code = lead & 0x1F, minimum = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code = lead & 0x0F, minimum = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code = lead & 0x07, minimum = 0x10000;
    }
    bool valid = length > 0 && i + length <= text.size();
    for (size_t k = 1; valid && k < length; ++k) {
      valid = (bytes[i + k] & 0xC0) == 0x80;
      code = (code << 6) | (bytes[i + k] & 0x3F);
    }
    valid = valid && code >= minimum && code <= 0x10FFFF && !(code >= 0xD800 && code <= 0xDFFF);
    if (!valid) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += length;
  }
  return true;
}

std::string sizes_text(const std::vector<int64_t>& sizes) {
  std::string text;
  for (size_t k = 0; k < sizes.size(); ++k) text += (k ? "x" : "") + std::to_string(sizes[k]);
  return text;
}

std::vector<std::string> parse_name_list(const std::string& text) {
  std::vector<std::string> names;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    const auto first = item.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    names.push_back(item.substr(first, item.find_last_not_of(" \t") - first + 1));
  }
  return names;
}

std::string exact_double_text(double value) {
  char text[64];
  std::snprintf(text, sizeof(text), "%a", value);
  return text;
}

double parse_exact_double(const std::string& text) { return std::strtod(text.c_str(), nullptr); }

}  // namespace clx
