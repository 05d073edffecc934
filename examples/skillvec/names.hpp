#pragma once
// Tensor-name order shared by the skillvec command's listings (inspect, merge --dry-run).

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <string>

namespace skillvec::cli {

/// "layers.10.x" after "layers.9.x": runs of digits compare as numbers.
inline bool natural_less(const std::string& a, const std::string& b) {
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
            std::size_t ie = i, je = j;
            while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
            while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
            const auto x = a.substr(i, ie - i), y = b.substr(j, je - j);
            const auto xs = x.substr(std::min(x.find_first_not_of('0'), x.size()));
            const auto ys = y.substr(std::min(y.find_first_not_of('0'), y.size()));
            if (xs.size() != ys.size()) return xs.size() < ys.size();
            if (xs != ys) return xs < ys;
            i = ie, j = je;
        } else {
            if (a[i] != b[j]) return a[i] < b[j];
            ++i, ++j;
        }
    }
    return a.size() - i < b.size() - j;
}

} // namespace skillvec::cli
