// expect: recipe_error::slot_is_bound_twice
#include <skillvec/recipe/slot.hpp>
#include <skillvec/skillvec.hpp>
using namespace skillvec;
void f(const memory_store& t, const memory_store& rl, const memory_store& sft) {
    (void)bind(recipes::past, arg<"target"> = t, arg<"rl"> = rl, arg<"sft"> = sft, arg<"rl"> = sft, arg<"lambda"> = 1.0f);
}
