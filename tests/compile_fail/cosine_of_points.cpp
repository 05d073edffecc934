// expect: reductions_take_vectors
#include <skillvec/skillvec.hpp>
void f(const skillvec::memory_store& a, const skillvec::memory_store& b) {
    (void)skillvec::cosine(skillvec::weights(a), skillvec::weights(b));
}
