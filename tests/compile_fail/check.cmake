# cmake -DCXX=... -DINCLUDE=... -DSOURCE=... -DEXPECT=... -P check.cmake
# Passes when SOURCE fails to compile and the *first* error's diagnostic (up to the next error)
# names skillvec::affine_error::EXPECT (or EXPECT itself when it is qualified): the message a user should see first. (GCC puts it on the
# error line itself; clang on the note that follows it.)
execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only "-I${INCLUDE}" "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
# Diagnostics read "file:line:col: error: ..."; anchoring on ": error:" skips "affine_error::".
string(FIND "${err}" ": error:" first)
if(first EQUAL -1)
  message(FATAL_ERROR "no error in the compiler output:\n${err}")
endif()
math(EXPR from "${first} + 8")
string(SUBSTRING "${err}" ${from} -1 rest)
string(FIND "${rest}" ": error:" next)
if(NOT next EQUAL -1)
  string(SUBSTRING "${rest}" 0 ${next} rest)
endif()
# EXPECT is an affine_error name, or a qualified name (recipe_error::...) matched as it is.
if(NOT EXPECT MATCHES "::")
  set(EXPECT "affine_error::${EXPECT}")
endif()
string(FIND "${rest}" "${EXPECT}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "the first error does not name ${EXPECT}:\n${rest}")
endif()
