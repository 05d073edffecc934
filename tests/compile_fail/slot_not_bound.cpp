// expect: recipe_error::slot_is_not_bound
#include <skillvec/recipe/slot.hpp>
#include <skillvec/skillvec.hpp>
using namespace skillvec;
void f(const memory_store& t, const memory_store& rl) {
    (void)bind(recipes::past, arg<"target"> = t, arg<"rl"> = rl, arg<"lambda"> = 1.0f);
}
