#pragma once
/// \file
/// Exception types. Every failure skillvec reports is a `skillvec::error` whose message names
/// what was being processed (store, tensor) and the rule that was broken.

#include <stdexcept>
#include <string>

namespace skillvec {

/// Base class of every exception skillvec throws.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace skillvec
