// The skillvec command compiled by nvcc, with --device gpu (cmake -DSKILLVEC_CUDA=ON).
#define SKILLVEC_CLI_GPU 1
#include "main.cpp"
