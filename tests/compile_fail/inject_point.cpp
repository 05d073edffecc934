// expect: inject_needs_a_point_and_a_vector
#include <skillvec/skillvec.hpp>
void f(const skillvec::memory_store& a, const skillvec::memory_store& b) {
    (void)skillvec::inject(skillvec::weights(a), skillvec::weights(b), 1.0f);
}
