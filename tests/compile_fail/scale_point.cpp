// expect: scaling_a_point_is_undefined
#include <skillvec/skillvec.hpp>
void f(const skillvec::memory_store& a) { (void)(0.5f * skillvec::weights(a)); }
