// expect: point_plus_point_is_undefined
#include <skillvec/recipe/slot.hpp>
#include <skillvec/skillvec.hpp>
constexpr auto bad = skillvec::slot<"a"> + skillvec::slot<"b">;
