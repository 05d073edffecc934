// expect: scalars_are_float
#include <skillvec/skillvec.hpp>
void f(const skillvec::memory_store& a, const skillvec::memory_store& b) {
    (void)(0.5 * (skillvec::weights(a) - skillvec::weights(b)));
}
