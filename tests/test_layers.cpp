// Layer index and module name parsing from Hugging Face style tensor names.
#include <skillvec/analysis/layers.hpp>

#include <catch2/catch.hpp>

using namespace skillvec;

TEST_CASE("layer_of understands the common naming schemes", "[layers]") {
    CHECK(layer_of("model.layers.12.mlp.up_proj.weight") == 12);
    CHECK(layer_of("model.layers.0.self_attn.q_proj.weight") == 0);
    CHECK(layer_of("transformer.h.3.attn.c_attn.bias") == 3);
    CHECK(layer_of("gpt_neox.layers.7.attention.dense.weight") == 7);
    CHECK(layer_of("encoder.block.2.layer.1.DenseReluDense.wi.weight") == 2); // the block, not the sub-layer
    CHECK(layer_of("model.decoder.layers.31.fc1.weight") == 31);
    CHECK(layer_of("layers.2.attn.qkv.weight") == 2);                     // skillvec's own model
    CHECK(layer_of("model.layers.5.block_sparse_moe.experts.3.w1.weight") == 5); // not the expert index
    CHECK(layer_of("vision.blocks.11.norm1.weight") == 11);
    CHECK(layer_of("encoder.0.weight") == 0);                              // fallback: first number
    CHECK(layer_of("model.embed_tokens.weight") == no_layer);
    CHECK(layer_of("lm_head.weight") == no_layer);
    CHECK(layer_of("model.norm.weight") == no_layer);
    CHECK(layer_of("") == no_layer);
    CHECK(layer_of("layers.") == no_layer);
    CHECK(layer_of("layers.12a.w") == no_layer);
    CHECK(layer_of("layers.99999999999999.w") == no_layer); // too long to be an index: not parsed
}

TEST_CASE("module_of names the tensor's kind within its layer", "[layers]") {
    CHECK(module_of("model.layers.12.mlp.up_proj.weight") == "mlp.up_proj");
    CHECK(module_of("model.layers.12.self_attn.q_proj.bias") == "self_attn.q_proj");
    CHECK(module_of("transformer.h.3.ln_1.weight") == "ln_1");
    CHECK(module_of("model.embed_tokens.weight") == "model.embed_tokens");
    CHECK(module_of("lm_head.weight") == "lm_head");
    CHECK(module_of("layers.3") == "");
    CHECK(module_of("weight") == "weight");
}
