#pragma once
/// \file
/// Per-tensor parameters live in expr/parameter.hpp (scaled nodes hold them); this header is kept for
/// recipe code that includes it by its old name.
#include <skillvec/expr/parameter.hpp>
