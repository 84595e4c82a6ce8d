#pragma once
// The reference trainer's model, one include: a Llama / Qwen2 decoder on Eigen with a
// hand-written backward, Hugging Face checkpoints and tokenizers, batched KV-cache generation.
//   config.hpp        model_config (HF field names), validation
//   parameters.hpp    the flat, HF-ordered parameter buffer and its per-tensor views
//   linear.hpp rmsnorm.hpp rope.hpp attention.hpp mlp.hpp    one layer each, forward + backward
//   transformer.hpp   the model: forward over packed batches → hidden states; backward
//   scalar_head.hpp   value / reward head on the hidden states
//   adamw.hpp         torch's AdamW over the flat buffers
//   safetensors.hpp checkpoint.hpp    HF checkpoint directories
//   sampling.hpp generate.hpp         sampling and batched generation with a KV cache
//   tokenizer.hpp     byte tokenizer and HF tokenizer.json byte-level BPE
//   threads.hpp       GEMM thread count
#include "adamw.hpp"
#include "checkpoint.hpp"
#include "config.hpp"
#include "generate.hpp"
#include "parameters.hpp"
#include "sampling.hpp"
#include "scalar_head.hpp"
#include "threads.hpp"
#include "tokenizer.hpp"
#include "transformer.hpp"
