// expect: recipe_error::param_slots_are_float__write_0_5f_not_0_5
#include <skillvec/recipe/slot.hpp>
#include <skillvec/skillvec.hpp>
using namespace skillvec;
void f(const memory_store& t, const memory_store& rl, const memory_store& sft) {
    (void)bind(recipes::past, arg<"target"> = t, arg<"rl"> = rl, arg<"sft"> = sft, arg<"lambda"> = 0.5);
}
