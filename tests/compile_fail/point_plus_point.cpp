// expect: point_plus_point_is_undefined
#include <skillvec/skillvec.hpp>
void f(const skillvec::memory_store& a, const skillvec::memory_store& b) { (void)(skillvec::weights(a) + skillvec::weights(b)); }
