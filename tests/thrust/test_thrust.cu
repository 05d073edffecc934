// The Thrust tests compiled by nvcc: the functors run on the GPU.
#include "test_thrust.cpp"
